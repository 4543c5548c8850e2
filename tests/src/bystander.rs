//! A well-behaved customer and agent that converse beside an attack and
//! measure what they get: every message must arrive, and quickly.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use kanal_client::{Client, Events};

use crate::{TestServer, next_message, text_of, until_caught_up};

/// A customer with a service conversation, and the agent who receives it.
pub struct Bystander {
    customer: Client,
    agent_events: Events,
    conversation: String,
    _agent: Client,
}

impl std::fmt::Debug for Bystander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bystander")
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}

/// What a bystander measured: one latency per message, send to arrival.
#[derive(Debug)]
pub struct Report {
    /// Messages sent.
    pub sent: usize,
    /// Messages the agent received, in order and intact.
    pub received: usize,
    /// Latencies, sorted.
    latencies: Vec<Duration>,
}

impl Report {
    /// The `q` quantile (0.0 to 1.0) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let last = self.latencies.len() - 1;
        // Rounded up: the p99 of 100 samples is the 99th, not the 98th.
        let index = ((last as f64) * q).ceil() as usize;
        self.latencies[index.min(last)]
    }

    /// Fails unless everything arrived and the p99 stays within `budget`.
    /// Prints the report, so a test's output says what it measured.
    pub fn assert_within(&self, what: &str, budget: Duration) -> Result<()> {
        println!(
            "{what}: bystander {}/{} messages, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.received,
            self.sent,
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
        );
        ensure!(
            self.received == self.sent,
            "{what}: the bystander lost messages ({} of {})",
            self.received,
            self.sent
        );
        ensure!(
            self.quantile(0.99) <= budget,
            "{what}: bystander p99 {:.1} ms exceeds {:.0} ms",
            ms(self.quantile(0.99)),
            ms(budget)
        );
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Bystander {
    /// Registers customer `local`, opens a service conversation with
    /// `support@localhost`, and logs in a new agent `agent` of that inbox.
    pub async fn start(server: &TestServer, local: &str, agent: &str) -> Result<Self> {
        let agent = server.agent(agent).await?;
        let mut agent_events = agent.subscribe(0).await?;
        until_caught_up(&mut agent_events).await?;
        let customer = server.register(local).await?;
        let conversation = customer
            .create_conversation(&["support@localhost"], "bystander")
            .await?
            .id;
        Ok(Self {
            customer,
            agent_events,
            conversation,
            _agent: agent,
        })
    }

    /// Sends `count` messages one after the other, each once the agent has
    /// the one before, and measures each from send to the agent's receipt.
    pub async fn converse(&mut self, count: usize) -> Result<Report> {
        let mut latencies = Vec::with_capacity(count);
        let mut received = 0;
        for n in 0..count {
            let text = format!("bystander {n}");
            let started = Instant::now();
            self.customer.send_text(&self.conversation, &text).await?;
            loop {
                let message = next_message(&mut self.agent_events).await?;
                if message.conversation != self.conversation {
                    continue;
                }
                ensure!(text_of(&message) == text, "out of order: {message:?}");
                break;
            }
            latencies.push(started.elapsed());
            received += 1;
        }
        latencies.sort();
        Ok(Report {
            sent: count,
            received,
            latencies,
        })
    }
}
