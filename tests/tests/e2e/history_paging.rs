//! History pages backwards across a long conversation without gaps or overlaps.

use kanal_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backwards_across_ten_thousand_messages() -> anyhow::Result<()> {
    const MESSAGES: u64 = 10_000;
    let server = TestServer::start_with(unlimited_sends()).await?;
    let customer = server.register("carla").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "long")
        .await?;

    // 64 sends in flight at a time, as a busy client would.
    let mut next = 1u64;
    while next <= MESSAGES {
        let mut batch = tokio::task::JoinSet::new();
        for i in next..(next + 64).min(MESSAGES + 1) {
            let (client, id) = (customer.clone(), conversation.id.clone());
            batch.spawn(async move {
                client
                    .send(&id, &format!("m{i}"), text_body(&format!("{i}")))
                    .await
            });
        }
        while let Some(sent) = batch.join_next().await {
            sent??;
        }
        next += 64;
    }

    let agent = server.agent("alice").await?;
    let mut seen = Vec::new();
    let mut before = 0;
    loop {
        let page = agent.history(&conversation.id, before, 500).await?;
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "a page is ascending and gapless"
        );
        seen.splice(0..0, seqs);
        let Some(oldest) = page.messages.first() else {
            break;
        };
        before = oldest.seq;
        if !page.has_more {
            break;
        }
    }
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    assert_eq!(seen, expected);
    // Default page size and the newest page.
    let newest = agent.history(&conversation.id, 0, 0).await?;
    assert_eq!(newest.messages.len(), 50);
    assert_eq!(newest.messages.last().map(|m| m.seq), Some(MESSAGES));
    Ok(())
}

fn text_body(text: &str) -> kanal_proto::pb::Body {
    kanal_proto::pb::Body {
        kind: Some(kanal_proto::pb::body::Kind::Text(text.into())),
    }
}

#[tokio::test]
async fn pages_of_large_messages_are_cut_to_the_response_limit() -> anyhow::Result<()> {
    use kanal_proto::limits;
    let server = TestServer::start_with(unlimited_sends()).await?;
    let customer = server.register("carla").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?;
    let big = "x".repeat(limits::MAX_TEXT);
    for _ in 0..100 {
        customer.send_text(&conversation.id, &big).await?;
    }
    let page = customer.history(&conversation.id, 0, 100).await?;
    let fits = limits::MAX_RESPONSE_FRAME / limits::MAX_TEXT;
    assert!(page.has_more, "a cut page says more exist");
    assert!(
        page.messages.len() < 100 && page.messages.len() + 2 >= fits,
        "{} messages",
        page.messages.len()
    );
    assert_eq!(
        page.messages.last().map(|m| m.seq),
        Some(100),
        "the newest are kept"
    );
    let mut total = page.messages.len();
    let mut before = page.messages[0].seq;
    loop {
        let older = customer.history(&conversation.id, before, 100).await?;
        total += older.messages.len();
        match older.messages.first() {
            Some(first) if older.has_more => before = first.seq,
            _ => break,
        }
    }
    assert_eq!(total, 100);
    Ok(())
}
