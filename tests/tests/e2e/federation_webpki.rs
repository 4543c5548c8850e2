//! Federation without configured peers (FEDERATION.md §2): servers find
//! each other by DNS SRV `_kanal._udp.DOMAIN`, asking a DNS server of the
//! test's own on 127.0.0.1, and trust each other because a test CA (their
//! `federation_ca_file`) issued their certificates for their domains. A
//! certificate for another domain, or from no trusted root, is refused by
//! either side; a domain without an SRV record waits, its error shown,
//! until the record exists, and one never found is told to its senders
//! as undelivered at the horizon.

use kanal_proto::pb;
use kanal_server::config::Config;
use kanal_tests::authority::{self, Issued, TestCa};
use kanal_tests::dns::TestDns;
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// Where the servers keep the test CA's root.
const ROOTS: &str = "federation-roots.pem";

/// A server of `domain` that trusts by WebPKI (the test CA's root only),
/// finds peers through `dns`, and proves its domain with `certificate`.
async fn server(
    domain: &str,
    dns: &TestDns,
    ca: &TestCa,
    certificate: &Issued,
) -> anyhow::Result<TestServer> {
    TestServer::start_with_certificate(config(domain, dns), certificate, &[(ROOTS, ca.pem())]).await
}

/// The configuration of a server of `domain` that trusts by WebPKI and
/// finds peers through `dns`.
fn config(domain: &str, dns: &TestDns) -> Config {
    Config {
        domain: domain.into(),
        federation_webpki: true,
        federation_ca_file: ROOTS.into(),
        federation_public_roots: false,
        federation_dns: dns.addr().to_string(),
        ..Config::default()
    }
}

/// A server of `domain` with the test CA's certificate for it, published
/// in `dns` (its SRV record and its host's A record).
async fn published(domain: &str, dns: &TestDns, ca: &TestCa) -> anyhow::Result<TestServer> {
    published_with(config(domain, dns), dns, ca).await
}

/// A server configured by `config`, published as [`published`] does.
async fn published_with(config: Config, dns: &TestDns, ca: &TestCa) -> anyhow::Result<TestServer> {
    let domain = config.domain.clone();
    let certificate = ca.issue(&domain)?;
    let server =
        TestServer::start_with_certificate(config, &certificate, &[(ROOTS, ca.pem())]).await?;
    let domain = domain.as_str();
    dns.publish(
        domain,
        &format!("fed.{domain}"),
        server.server.federation_addr(),
    )?;
    Ok(server)
}

/// Waits until `kanald peer show DOMAIN` on `server` names a last error
/// containing each of `wanted`; returns what it showed.
async fn until_last_error(
    server: &TestServer,
    domain: &str,
    wanted: &[&str],
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let shown = kanald_output(KANALD, server.path(), &["peer", "show", domain])
            .await
            .unwrap_or_default();
        if shown
            .lines()
            .any(|line| line.starts_with("last error") && wanted.iter().all(|w| line.contains(w)))
        {
            return Ok(shown);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no last error with {wanted:?}:\n{shown}"
        );
        // The status is published as delivery goes: look again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn servers_found_by_dns_srv_and_trusted_by_webpki_converse() -> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let a = published("a.test", &dns, &ca).await?;
    let b = published("b.test", &dns, &ca).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;

    // No peer is configured on either side.
    let listed = kanald_output(KANALD, a.path(), &["peer", "list"]).await?;
    assert_eq!(listed.trim(), "", "{listed}");

    let conversation = carla
        .create_conversation(&["support@b.test"], "washer leaks")
        .await?;
    assert!(
        conversation.id.starts_with("b.test/"),
        "{}",
        conversation.id
    );
    let sent = carla.send_text(&conversation.id, "my washer leaks").await?;
    assert!(sent.relayed, "queued for the host: {sent:?}");

    // A found B by its SRV record; B trusted A's certificate for a.test.
    match next_stored(&mut ann_events).await?.kind {
        Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, conversation.id),
        other => panic!("expected ConversationAdded, got {other:?}"),
    }
    let first = next_message(&mut ann_events).await?;
    assert_eq!((first.seq, first.sender.as_str()), (1, "carla@a.test"));
    assert_eq!(text_of(&first), "my washer leaks");

    // And the other way: B finds A to replicate its agent's reply.
    let reply = ann.send_text(&conversation.id, "clean the filter").await?;
    assert_eq!((reply.seq, reply.relayed), (2, false));
    let mine = next_message(&mut carla_events).await?;
    assert_eq!((mine.seq, mine.sender.as_str()), (1, "carla@a.test"));
    let answer = next_message(&mut carla_events).await?;
    assert_eq!((answer.seq, answer.sender.as_str()), (2, "ann@b.test"));
    assert_eq!(text_of(&answer), "clean the filter");

    // The operator sees the peer found by DNS, and where it was reached.
    let shown = kanald_output(KANALD, a.path(), &["peer", "show", "b.test"]).await?;
    let b_addr = b.server.federation_addr().to_string();
    assert!(
        shown.contains(&format!("address      {b_addr} (DNS SRV)")),
        "{shown}"
    );
    assert!(shown.contains("trusted by WebPKI"), "{shown}");
    let listed = kanald_output(KANALD, b.path(), &["peer", "list"]).await?;
    assert!(listed.starts_with("a.test "), "{listed}");
    Ok(())
}

/// Waits until `kanald peer list` on `server` lists no peer.
async fn until_no_peer_listed(server: &TestServer) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed = kanald_output(KANALD, server.path(), &["peer", "list"]).await?;
        if listed.trim().is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still listed:\n{listed}"
        );
        // Deliveries end as they find themselves idle: look again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_delivery_toward_a_peer_found_by_dns_ends_when_idle_and_starts_again_for_the_next_message()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let idling = |domain: &str| Config {
        // 0.6 s.
        federation_idle_peer_minutes: 0.01,
        ..config(domain, &dns)
    };
    let a = published_with(idling("a.test"), &dns, &ca).await?;
    let b = published_with(idling("b.test"), &dns, &ca).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "washer leaks")
        .await?;
    carla.send_text(&conversation.id, "first").await?;
    next_stored(&mut ann_events).await?;
    assert_eq!(text_of(&next_message(&mut ann_events).await?), "first");
    ann.send_text(&conversation.id, "reply").await?;
    assert_eq!(next_message(&mut ann_events).await?.seq, 2, "her own");
    let mut texts = Vec::new();
    for _ in 0..2 {
        let message = next_message(&mut carla_events).await?;
        texts.push(text_of(&message).to_owned());
    }
    assert_eq!(texts, ["first", "reply"]);

    // Nothing more to deliver either way: both deliveries end, and with
    // them what each server held for the other.
    until_no_peer_listed(&a).await?;
    until_no_peer_listed(&b).await?;

    // The next message starts them again, numbered on from the last.
    carla.send_text(&conversation.id, "second").await?;
    let second = next_message(&mut ann_events).await?;
    assert_eq!((second.seq, text_of(&second)), (3, "second"));
    ann.send_text(&conversation.id, "again").await?;
    let mine = next_message(&mut carla_events).await?;
    let answer = next_message(&mut carla_events).await?;
    assert_eq!(
        [(mine.seq, text_of(&mine)), (answer.seq, text_of(&answer))],
        [(3, "second"), (4, "again")]
    );
    Ok(())
}

/// A delivery toward a server found by DNS that holds nothing but given-up
/// transactions rests, as idle ones end, rather than retry for ever toward
/// a server that may be gone; the tombstones stay stored, and a connection
/// from the peer starts it again, so the peer's sequence has no hole.
#[tokio::test]
async fn a_delivery_left_with_given_up_transactions_rests_until_the_peer_connects()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    // Resting after 1.2 s of failing, longer than the first retry (at
    // most 1 s), and transactions given up after 1.8 s.
    let a_config = Config {
        federation_idle_peer_minutes: 0.02,
        federation_horizon_hours: 0.0005,
        ..config("a.test", &dns)
    };
    let b_config = Config {
        federation_idle_peer_minutes: 0.01,
        ..config("b.test", &dns)
    };
    let a = published_with(a_config, &dns, &ca).await?;
    let b = published_with(b_config, &dns, &ca).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "heater off")
        .await?;
    next_stored(&mut ann_events).await?;
    until_no_peer_listed(&a).await?;
    until_no_peer_listed(&b).await?;

    // B's record now names port 0: every try fails at once, and what
    // Carla sends is given up at the horizon, and she is told.
    dns.set_srv("b.test", 10, 10, 0, "fed.b.test")?;
    carla.send_text(&conversation.id, "lost").await?;
    loop {
        if let Some(pb::event::Kind::DeliveryFailed(_)) = next_stored(&mut carla_events).await?.kind
        {
            break;
        }
    }
    let shown = until_shown(&a, "b.test", "delivery     resting").await?;
    assert!(shown.contains("queued       1"), "{shown}");
    assert!(shown.contains("expired      1"), "{shown}");
    assert!(!shown.contains("next retry"), "nothing is tried: {shown}");

    // B comes back and greets A (which delivered to it lately): A's
    // delivery starts again and hands over the tombstone.
    let b = b.restart().await?;
    dns.publish("b.test", "fed.b.test", b.server.federation_addr())?;
    let shown = until_shown(&a, "b.test", "queued       0").await?;
    assert!(!shown.contains("resting"), "{shown}");
    drop((ann, ann_events));
    let ann = b.login("ann@b.test").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    carla.send_text(&conversation.id, "after").await?;
    assert_eq!(text_of(&next_message(&mut ann_events).await?), "after");
    Ok(())
}

/// Waits until `kanald peer show DOMAIN` on `server` shows `wanted`.
async fn until_shown(server: &TestServer, domain: &str, wanted: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let shown = kanald_output(KANALD, server.path(), &["peer", "show", domain])
            .await
            .unwrap_or_default();
        if shown.contains(wanted) {
            return Ok(shown);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no {wanted:?} for {domain}:\n{shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_restarted_server_greets_the_peers_found_by_dns_that_delivered_to_it()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let idling = |domain: &str| Config {
        // 3 s.
        federation_idle_peer_minutes: 0.05,
        ..config(domain, &dns)
    };
    let a = published_with(idling("a.test"), &dns, &ca).await?;
    let b = published_with(idling("b.test"), &dns, &ca).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    carla
        .create_conversation(&["support@b.test"], "washer leaks")
        .await?;
    next_stored(&mut ann_events).await?;
    // B replicated the conversation to A, and its delivery ended idle:
    // nothing is queued toward A, which is not a configured peer.
    until_no_peer_listed(&b).await?;
    drop((ann, ann_events));

    let b = b.restart().await?;
    dns.publish("b.test", "fed.b.test", b.server.federation_addr())?;
    // A delivered to B lately: B dials it, found by DNS, only to greet it.
    let a_addr = a.server.federation_addr().to_string();
    let shown = until_shown(&b, "a.test", &format!("{a_addr} (DNS SRV)")).await?;
    assert!(shown.contains("queued       0"), "{shown}");
    // Greeted, the delivery ends idle again.
    until_no_peer_listed(&b).await?;
    Ok(())
}

#[tokio::test]
async fn a_certificate_for_another_domain_or_from_no_trusted_root_is_refused_both_ways()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let a = published("a.test", &dns, &ca).await?;
    let b = published("b.test", &dns, &ca).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;

    // A server calling itself m.test with the CA's certificate for x.test
    // dials B: the chain is good, but not for m.test.
    let misnamed = server("m.test", &dns, &ca, &ca.issue("x.test")?).await?;
    let mallory = misnamed.register("mallory").await?;
    let forged = mallory
        .create_conversation(&["support@b.test"], "refund me")
        .await?;
    mallory.send_text(&forged.id, "hello").await?;
    let shown = until_last_error(
        &misnamed,
        "b.test",
        &["refused this server", "not valid for m.test"],
    )
    .await?;
    assert!(shown.contains("queued       2"), "{shown}");

    // A server whose configuration names a roots file that is not there
    // does not start, and says which key is at fault.
    let refused = TestServer::start_with(Config {
        domain: "s.test".into(),
        federation_webpki: true,
        federation_ca_file: ROOTS.into(),
        federation_dns: dns.addr().to_string(),
        ..Config::default()
    })
    .await
    .expect_err("no federation_ca_file");
    assert!(
        format!("{refused:#}").contains("`federation_ca_file`"),
        "{refused:#}"
    );

    // One calling itself s.test with a self-signed certificate for s.test
    // (it trusts the CA itself): its certificate chains to no root B
    // trusts.
    let self_signed = server("s.test", &dns, &ca, &authority::self_signed("s.test")?).await?;
    let sam = self_signed.register("sam").await?;
    let forged = sam
        .create_conversation(&["support@b.test"], "refund me too")
        .await?;
    sam.send_text(&forged.id, "hello").await?;
    until_last_error(
        &self_signed,
        "b.test",
        &["refused this server", "does not chain to a trusted root"],
    )
    .await?;

    // The other way: A writes to z.test, whose SRV record leads to the
    // server with the certificate for x.test, and to y.test, whose record
    // leads to the self-signed one; A refuses both certificates as it
    // dials, and delivers nothing there.
    dns.publish("z.test", "fed.z.test", misnamed.server.federation_addr())?;
    dns.publish("y.test", "fed.y.test", self_signed.server.federation_addr())?;
    let carla = a.register("carla").await?;
    for (domain, why) in [
        ("z.test", "not valid for name"),
        ("y.test", "UnknownIssuer"),
    ] {
        let to = carla
            .create_conversation(&[&format!("support@{domain}")], "hello")
            .await?;
        carla.send_text(&to.id, "hello there").await?;
        let shown = until_last_error(&a, domain, &["certificate", why]).await?;
        assert!(shown.contains("queued       2"), "{shown}");
    }

    // Nothing reached B from either impostor: its agent's next event is
    // the one real customer's conversation.
    let real = carla
        .create_conversation(&["support@b.test"], "real")
        .await?;
    match next_stored(&mut ann_events).await?.kind {
        Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, real.id),
        other => panic!("expected the real conversation, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_domain_without_an_srv_record_shows_why_and_is_delivered_once_it_has_one()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let a = published("a.test", &dns, &ca).await?;
    // B runs, but DNS does not name it yet.
    let b = server("b.test", &dns, &ca, &ca.issue("b.test")?).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "heater")
        .await?;
    carla.send_text(&conversation.id, "it is cold").await?;

    let shown = until_last_error(&a, "b.test", &["no DNS SRV record _kanal._udp.b.test"]).await?;
    assert!(shown.contains("queued       2"), "{shown}");
    assert!(shown.contains("next retry"), "{shown}");

    // The operator publishes B; the next retry finds it.
    dns.publish("b.test", "fed.b.test", b.server.federation_addr())?;
    match next_stored(&mut ann_events).await?.kind {
        Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, conversation.id),
        other => panic!("expected ConversationAdded, got {other:?}"),
    }
    let message = next_message(&mut ann_events).await?;
    assert_eq!(text_of(&message), "it is cold");
    Ok(())
}

#[tokio::test]
async fn a_domain_never_found_is_told_undelivered_to_its_sender_at_the_horizon()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let issued = ca.issue("a.test")?;
    let a = TestServer::start_with_certificate(
        Config {
            domain: "a.test".into(),
            federation_webpki: true,
            federation_ca_file: ROOTS.into(),
            federation_public_roots: false,
            federation_dns: dns.addr().to_string(),
            // Two seconds.
            federation_horizon_hours: 2.0 / 3600.0,
            ..Config::default()
        },
        &issued,
        &[(ROOTS, ca.pem())],
    )
    .await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    // Nothing in DNS names nowhere.test: the conversation is taken, and
    // then what it carries comes back, expired, once each.
    let conversation = carla
        .create_conversation(&["support@nowhere.test"], "anyone?")
        .await?;
    carla
        .send(
            &conversation.id,
            "m0",
            pb::Body {
                kind: Some(pb::body::Kind::Text("m0".into())),
            },
        )
        .await?;
    let mut told = Vec::new();
    while told.len() < 2 {
        if let Some(pb::event::Kind::DeliveryFailed(failed)) =
            next_stored(&mut carla_events).await?.kind
        {
            assert_eq!(failed.failure(), pb::DeliveryFailure::Expired);
            assert_eq!(failed.server, "nowhere.test");
            told.push(failed.client_msg_id);
        }
    }
    assert_eq!(told, ["", "m0"]);
    let listed = kanald_output(KANALD, a.path(), &["peer", "undelivered", "nowhere.test"]).await?;
    assert_eq!(listed.matches("expired").count(), 2, "{listed}");
    Ok(())
}

#[tokio::test]
async fn a_peer_added_without_a_fingerprint_is_trusted_by_webpki_at_its_configured_address()
-> anyhow::Result<()> {
    let dns = TestDns::start().await?;
    let ca = TestCa::new("Kanal test CA")?;
    let a = published("a.test", &dns, &ca).await?;
    // DNS does not name B: A reaches it at the address its operator gives.
    let b = server("b.test", &dns, &ca, &ca.issue("b.test")?).await?;
    let b_addr = b.server.federation_addr().to_string();
    let refused = refused_kanald(KANALD, a.path(), &["peer", "add", "b.test"]).await?;
    assert!(
        refused.contains("an address, a fingerprint or both"),
        "{refused}"
    );
    kanald_output(
        KANALD,
        a.path(),
        &["peer", "add", "b.test", "--address", &b_addr],
    )
    .await?;
    let shown = kanald_output(KANALD, a.path(), &["peer", "show", "b.test"]).await?;
    assert!(
        shown.contains(&format!("address      {b_addr}\n")),
        "{shown}"
    );
    assert!(
        shown.contains("fingerprint  none, trusted by WebPKI\n"),
        "{shown}"
    );

    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "hello")
        .await?;
    carla.send_text(&conversation.id, "found you").await?;
    let message = next_message(&mut ann_events).await?;
    assert_eq!(text_of(&message), "found you");

    // Without WebPKI, a peer needs its fingerprint: the CLI says which key.
    let plain = TestServer::start_with(Config {
        domain: "c.test".into(),
        ..Config::default()
    })
    .await?;
    let refused = refused_kanald(
        KANALD,
        plain.path(),
        &["peer", "add", "b.test", "--address", &b_addr],
    )
    .await?;
    assert!(refused.contains("federation_webpki"), "{refused}");
    Ok(())
}
