//! The desk's reports (PROTOCOL.md §15.8): what one inbox's desk did over
//! a period, read from its desk log alone, and its backlog now.
//!
//! Every figure comes from entries the desk wrote when things happened,
//! so a report needs no message history and says the same however often
//! it is asked: `status` entries count openings and resolutions,
//! `assigned` entries assignments, `sla` "met" entries the response and
//! resolution times (elapsed and in business time, as the SLA clock
//! counted them) and the SLA hit rate, and `rating` entries the CSAT.
//! Who is credited: an assignment its new owner, a response the agent who
//! answered, a resolution (its time and its rating) the one who resolved.

use std::collections::{BTreeMap, HashMap};

use kanal_proto::pb;

use super::sla::SlaPolicy;
use crate::model::{Owner, PartyId, Status, Ticket};

/// The figures of one inbox's period, fed its desk-log entries in order.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    inbox: Figures,
    agents: BTreeMap<String, Figures>,
    /// The last rating of each rated resolution, by (conversation, the
    /// resolution's dseq).
    ratings: HashMap<(String, u64), Rating>,
}

#[derive(Debug, Default)]
struct Figures {
    opened: u32,
    assigned: u32,
    resolved: u32,
    /// First response, next response, resolution.
    met: [Samples; 3],
    sla: [Hits; 3],
    /// Per scale: how many gave each score.
    csat: BTreeMap<i32, Vec<u32>>,
}

#[derive(Debug, Default)]
struct Samples {
    elapsed: Vec<i64>,
    business: Vec<i64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Hits {
    in_time: u32,
    late: u32,
    breaches: u32,
}

#[derive(Debug, Clone)]
struct Rating {
    scale: i32,
    score: u32,
    resolved_by: String,
}

const TARGETS: [pb::SlaTarget; 3] = [
    pb::SlaTarget::FirstResponse,
    pb::SlaTarget::NextResponse,
    pb::SlaTarget::Resolution,
];

impl Tally {
    /// Counts one entry of the period (entries come in time order).
    pub(crate) fn add(&mut self, entry: &pb::DeskEvent) {
        use pb::desk_event::Kind;
        if entry.dseq == 1 {
            // A ticket's log starts when the ticket does.
            self.inbox.opened += 1;
        }
        match &entry.kind {
            Some(Kind::Status(status)) => {
                let resolved = pb::TicketStatus::Resolved as i32;
                if status.to == resolved {
                    self.inbox.resolved += 1;
                    if let Some(agent) = self.agent(&entry.actor) {
                        agent.resolved += 1;
                    }
                } else if status.from == resolved {
                    self.inbox.opened += 1;
                }
            }
            Some(Kind::Assigned(assigned)) if !assigned.owner.is_empty() => {
                self.inbox.assigned += 1;
                if let Some(agent) = self.agent(&assigned.owner) {
                    agent.assigned += 1;
                }
            }
            Some(Kind::Sla(sla)) => {
                let Some(target) = TARGETS.iter().position(|t| *t as i32 == sla.target) else {
                    return;
                };
                match pb::SlaAlert::try_from(sla.alert) {
                    Ok(pb::SlaAlert::Breach) => self.inbox.sla[target].breaches += 1,
                    Ok(pb::SlaAlert::Met) => {
                        let elapsed = (sla.started_at_ms > 0)
                            .then(|| (entry.at_ms - sla.started_at_ms).max(0));
                        self.inbox.met(target, sla, elapsed);
                        if let Some(agent) = self.agent(&entry.actor) {
                            agent.met(target, sla, elapsed);
                        }
                    }
                    _ => {}
                }
            }
            Some(Kind::Rating(rating)) => {
                self.ratings.insert(
                    (entry.conversation.clone(), rating.resolution_dseq),
                    Rating {
                        scale: rating.scale,
                        score: rating.score,
                        resolved_by: rating.resolved_by.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    fn agent(&mut self, address: &str) -> Option<&mut Figures> {
        (!address.is_empty()).then(|| self.agents.entry(address.to_owned()).or_default())
    }

    /// The inbox's report: its figures, those of `agents` (the inbox's
    /// agents and bot) and of anyone else credited or owning a ticket
    /// now, the SLA targets
    /// `policy` sets, and `backlog` now.
    pub(crate) fn report(
        mut self,
        inbox: String,
        agents: impl IntoIterator<Item = String>,
        policy: &SlaPolicy,
        backlog: Backlog,
        complete: bool,
    ) -> pb::InboxReport {
        for agent in agents.into_iter().chain(backlog.owned.keys().cloned()) {
            self.agents.entry(agent).or_default();
        }
        for rating in std::mem::take(&mut self.ratings).into_values() {
            self.inbox.rated(&rating);
            if let Some(agent) = self.agent(&rating.resolved_by) {
                agent.rated(&rating);
            }
        }
        let goals = [
            policy.first_response_ms,
            policy.next_response_ms,
            policy.resolution_ms,
        ];
        let agents = self
            .agents
            .into_iter()
            .map(|(agent, figures)| {
                let mut figures = figures.render(&goals);
                for sla in &mut figures.sla {
                    // An agent's breaches are its late answers.
                    sla.breaches = 0;
                }
                pb::AgentFigures {
                    owned: backlog.owned.get(&agent).copied().unwrap_or(0),
                    agent,
                    figures: Some(figures),
                }
            })
            .collect();
        pb::InboxReport {
            inbox,
            figures: Some(self.inbox.render(&goals)),
            agents,
            backlog: Some(backlog.counts),
            complete,
        }
    }
}

impl Figures {
    fn met(&mut self, target: usize, sla: &pb::DeskSla, elapsed: Option<i64>) {
        let samples = &mut self.met[target];
        samples.business.push(sla.business_ms.max(0));
        samples.elapsed.extend(elapsed);
        let hits = &mut self.sla[target];
        if sla.in_time {
            hits.in_time += 1;
        } else {
            hits.late += 1;
        }
    }

    fn rated(&mut self, rating: &Rating) {
        let top = match pb::RatingScale::try_from(rating.scale) {
            Ok(pb::RatingScale::Stars) => 5,
            Ok(pb::RatingScale::Nps) => 10,
            Ok(pb::RatingScale::Thumbs) => 1,
            _ => return,
        };
        if rating.score > top {
            return;
        }
        let scores = self
            .csat
            .entry(rating.scale)
            .or_insert_with(|| vec![0; top as usize + 1]);
        scores[rating.score as usize] += 1;
    }

    fn render(&self, goals: &[Option<i64>; 3]) -> pb::DeskFigures {
        let sla = TARGETS
            .iter()
            .zip(goals)
            .zip(&self.sla)
            .filter_map(|((target, goal), hits)| {
                goal.map(|target_ms| pb::SlaFigures {
                    target: *target as i32,
                    target_ms,
                    in_time: hits.in_time,
                    late: hits.late,
                    breaches: hits.breaches,
                })
            })
            .collect();
        let csat = self
            .csat
            .iter()
            .map(|(&scale, scores)| csat(scale, scores))
            .collect();
        pb::DeskFigures {
            opened: self.opened,
            assigned: self.assigned,
            resolved: self.resolved,
            first_response: Some(self.met[0].durations()),
            next_response: Some(self.met[1].durations()),
            resolution: Some(self.met[2].durations()),
            sla,
            csat,
        }
    }
}

/// Which scores count as satisfied and which as dissatisfied.
type Verdict = fn(usize) -> bool;

fn csat(scale: i32, scores: &[u32]) -> pb::CsatFigures {
    let (satisfied, dissatisfied): (Verdict, Verdict) = match pb::RatingScale::try_from(scale) {
        Ok(pb::RatingScale::Stars) => (|s| s >= 4, |s| s <= 2),
        Ok(pb::RatingScale::Nps) => (|s| s >= 9, |s| s <= 6),
        _ => (|s| s == 1, |s| s == 0),
    };
    let count = |pick: Verdict| -> u32 {
        scores
            .iter()
            .enumerate()
            .filter(|&(score, _)| pick(score))
            .map(|(_, n)| n)
            .sum()
    };
    pb::CsatFigures {
        scale,
        ratings: scores.iter().sum(),
        scores: scores.to_vec(),
        satisfied: count(satisfied),
        dissatisfied: count(dissatisfied),
    }
}

impl Samples {
    fn durations(&self) -> pb::Durations {
        let (median_ms, p90_ms, mean_ms) = spread(&self.elapsed);
        let (business_median_ms, business_p90_ms, business_mean_ms) = spread(&self.business);
        pb::Durations {
            count: u32::try_from(self.business.len()).unwrap_or(u32::MAX),
            median_ms,
            p90_ms,
            mean_ms,
            business_median_ms,
            business_p90_ms,
            business_mean_ms,
        }
    }
}

/// Median, 90th percentile (nearest rank) and mean; 0s for no samples.
fn spread(samples: &[i64]) -> (i64, i64, i64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
    let sum: i128 = sorted.iter().map(|&v| i128::from(v)).sum();
    let mean = i64::try_from(sum / sorted.len() as i128).unwrap_or(i64::MAX);
    (rank(50), rank(90), mean)
}

/// A desk's unresolved tickets now: the counts, and how many each owner
/// holds (by address).
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    counts: pb::Backlog,
    owned: HashMap<String, u32>,
}

impl Backlog {
    /// Counts `ticket`; `address` names its owner.
    pub(crate) fn add(&mut self, ticket: &Ticket, address: impl Fn(PartyId) -> Option<String>) {
        let counts = &mut self.counts;
        match ticket.status {
            Status::Open => counts.open += 1,
            Status::Pending => counts.pending += 1,
            Status::Snoozed { .. } => counts.snoozed += 1,
            Status::Resolved { .. } => return,
        }
        match ticket.owner {
            Owner::Nobody if ticket.status == Status::Open => counts.unowned += 1,
            Owner::Nobody => {}
            Owner::Agent(id) | Owner::Bot(id) => {
                if let Some(owner) = address(id) {
                    *self.owned.entry(owner).or_default() += 1;
                }
            }
        }
        if let Some(since) = ticket.waiting_since_ms {
            counts.waiting += 1;
            if counts.oldest_waiting_since_ms == 0 || since < counts.oldest_waiting_since_ms {
                counts.oldest_waiting_since_ms = since;
            }
        }
    }
}

#[cfg(test)]
#[path = "report/tests.rs"]
mod tests;
