//! The SLA clock of one ticket: first response, next response and
//! resolution targets, counted in the inbox's business hours.
//!
//! Each target runs while the desk owes something, pauses while the
//! conversation waits on the customer (pending) or is snoozed, and stops
//! for good on resolve: no clock keeps running on a resolved conversation.
//! A running target has two instants: its warning (the target less the
//! policy's warning lead) and its breach. The clock is pure: the desk
//! asks it for its next instant and feeds it the time.

use super::hours::BusinessHours;
use crate::model::{SlaEvent, Target};

/// An inbox's service-level targets, in business milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SlaPolicy {
    /// From the first customer message to the desk's first answer.
    pub(crate) first_response_ms: Option<i64>,
    /// From a customer message to the desk's next answer, after the first.
    pub(crate) next_response_ms: Option<i64>,
    /// From opening (or reopening) to resolve.
    pub(crate) resolution_ms: Option<i64>,
    /// How long before a breach its warning comes (0: no warning).
    pub(crate) warn_before_ms: i64,
    /// What happens to a ticket that breaches a target.
    pub(crate) escalation: Escalation,
}

/// What a breach does, besides telling the agents.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Escalation {
    /// Transfer the ticket to this team.
    pub(crate) to_team: Option<String>,
    /// Raise its priority one step.
    pub(crate) raise_priority: bool,
}

/// Where one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) enum Leg {
    /// Not started (or stopped by a resolve before it was due).
    #[default]
    Idle,
    /// Counting since `since_ms`, with `used_ms` business ms counted before.
    Running {
        /// When it first started, ms since the Unix epoch (0: a clock
        /// stored before this was kept).
        #[serde(default)]
        started_ms: i64,
        /// When it last started or resumed, ms since the Unix epoch.
        since_ms: i64,
        /// Business ms counted before `since_ms`.
        used_ms: i64,
        /// Whether its warning was given.
        warned: bool,
        /// Whether it was breached (it runs on until met, for the reports).
        breached: bool,
    },
    /// Paused while the conversation waits on the customer.
    Paused {
        /// When it first started (0: unknown).
        #[serde(default)]
        started_ms: i64,
        /// Business ms counted so far.
        used_ms: i64,
        /// Whether its warning was given.
        warned: bool,
        /// Whether it was breached.
        breached: bool,
    },
    /// Met, after `used_ms` business ms; `in_time` unless it was breached.
    Met {
        /// Business ms it took.
        used_ms: i64,
        /// Whether it was met before its breach.
        in_time: bool,
    },
}

/// What a counting leg has counted at some instant.
#[derive(Debug, Clone, Copy)]
struct Counted {
    started_ms: i64,
    used_ms: i64,
    breached: bool,
}

/// One ticket's SLA clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SlaClock {
    /// The first response.
    pub(crate) first_response: Leg,
    /// The next response.
    pub(crate) next_response: Leg,
    /// The resolution.
    pub(crate) resolution: Leg,
}

const TARGETS: [Target; 3] = [
    Target::FirstResponse,
    Target::NextResponse,
    Target::Resolution,
];

impl SlaClock {
    fn leg(&mut self, target: Target) -> &mut Leg {
        match target {
            Target::FirstResponse => &mut self.first_response,
            Target::NextResponse => &mut self.next_response,
            Target::Resolution => &mut self.resolution,
        }
    }

    /// A new conversation (its first customer message at `now`): the first
    /// response and the resolution start.
    pub(crate) fn opened(&mut self, now: i64) {
        *self = SlaClock::default();
        self.first_response = running(now);
        self.resolution = running(now);
    }

    /// The customer wrote at `now`: once the first response is met, the
    /// next response starts (if it is not running already).
    pub(crate) fn customer_wrote(&mut self, now: i64) {
        let first_met = matches!(self.first_response, Leg::Met { .. });
        if first_met && matches!(self.next_response, Leg::Idle | Leg::Met { .. }) {
            self.next_response = running(now);
        }
    }

    /// The desk answered at `now`: the response target running is met.
    pub(crate) fn desk_answered(
        &mut self,
        now: i64,
        hours: &BusinessHours,
        out: &mut Vec<SlaEvent>,
    ) {
        for target in [Target::FirstResponse, Target::NextResponse] {
            let leg = self.leg(target);
            if let Some(counted) = leg.counted(now, hours) {
                *leg = counted.met();
                out.push(counted.event(target));
            }
        }
    }

    /// The conversation waits on the customer (pending) or on a time
    /// (snoozed) from `now`: every target pauses.
    pub(crate) fn pause(&mut self, now: i64, hours: &BusinessHours) {
        for target in TARGETS {
            let leg = self.leg(target);
            if let Leg::Running { warned, .. } = *leg
                && let Some(counted) = leg.counted(now, hours)
            {
                *leg = Leg::Paused {
                    started_ms: counted.started_ms,
                    used_ms: counted.used_ms,
                    warned,
                    breached: counted.breached,
                };
            }
        }
    }

    /// The conversation is open again at `now`: paused targets resume.
    pub(crate) fn resume(&mut self, now: i64) {
        for target in TARGETS {
            let leg = self.leg(target);
            if let Leg::Paused {
                started_ms,
                used_ms,
                warned,
                breached,
            } = *leg
            {
                *leg = Leg::Running {
                    started_ms,
                    since_ms: now,
                    used_ms,
                    warned,
                    breached,
                };
            }
        }
    }

    /// Resolved at `now`: the resolution is met, the response targets stop
    /// (a resolved conversation owes no answer).
    pub(crate) fn resolved(&mut self, now: i64, hours: &BusinessHours, out: &mut Vec<SlaEvent>) {
        if let Some(counted) = self.resolution.counted(now, hours) {
            self.resolution = counted.met();
            out.push(counted.event(Target::Resolution));
        }
        for leg in [&mut self.first_response, &mut self.next_response] {
            if matches!(leg, Leg::Running { .. } | Leg::Paused { .. }) {
                *leg = Leg::Idle;
            }
        }
    }

    /// Reopened at `now`: a new resolution target starts, and the customer
    /// waits for an answer again.
    pub(crate) fn reopened(&mut self, now: i64) {
        self.resolution = running(now);
        if matches!(self.first_response, Leg::Met { .. }) {
            self.next_response = running(now);
        } else {
            self.first_response = running(now);
        }
    }

    /// The clock's next instant under `policy` (a warning or a breach), if
    /// a target is running toward one.
    pub(crate) fn next_instant(&self, policy: &SlaPolicy, hours: &BusinessHours) -> Option<i64> {
        TARGETS
            .iter()
            .filter_map(|&t| self.due(t, policy, hours).map(|(at, _)| at))
            .min()
    }

    /// The clock's next warning or breach under `policy`, with its target.
    pub(crate) fn next_due(
        &self,
        policy: &SlaPolicy,
        hours: &BusinessHours,
    ) -> Option<(i64, Target)> {
        TARGETS
            .iter()
            .filter_map(|&t| self.due(t, policy, hours).map(|(at, _)| (at, t)))
            .min_by_key(|&(at, _)| at)
    }

    /// Gives every warning and breach due at `now`.
    pub(crate) fn handle_timeout(
        &mut self,
        now: i64,
        policy: &SlaPolicy,
        hours: &BusinessHours,
        out: &mut Vec<SlaEvent>,
    ) {
        for target in TARGETS {
            while let Some((at, breach)) = self.due(target, policy, hours) {
                if at > now {
                    break;
                }
                if let Leg::Running {
                    warned, breached, ..
                } = self.leg(target)
                {
                    if breach {
                        *breached = true;
                        out.push(SlaEvent::Breach(target));
                    } else {
                        *warned = true;
                        out.push(SlaEvent::Warning(target));
                    }
                }
            }
        }
    }

    /// A running target's next instant and whether it is the breach (else
    /// the warning).
    fn due(
        &self,
        target: Target,
        policy: &SlaPolicy,
        hours: &BusinessHours,
    ) -> Option<(i64, bool)> {
        let goal = match target {
            Target::FirstResponse => policy.first_response_ms,
            Target::NextResponse => policy.next_response_ms,
            Target::Resolution => policy.resolution_ms,
        }?;
        let leg = match target {
            Target::FirstResponse => self.first_response,
            Target::NextResponse => self.next_response,
            Target::Resolution => self.resolution,
        };
        let Leg::Running {
            since_ms,
            used_ms,
            warned,
            breached,
            ..
        } = leg
        else {
            return None;
        };
        if breached {
            return None;
        }
        let warn_at = goal - policy.warn_before_ms;
        let (left, breach) = if !warned && policy.warn_before_ms > 0 && warn_at > 0 {
            (warn_at - used_ms, false)
        } else {
            (goal - used_ms, true)
        };
        Some((hours.deadline(since_ms, left.max(0))?, breach))
    }
}

impl Leg {
    /// What a running or paused leg has counted at `now`; `None` for a
    /// leg that is not counting.
    fn counted(&self, now: i64, hours: &BusinessHours) -> Option<Counted> {
        match *self {
            Leg::Running {
                started_ms,
                since_ms,
                used_ms,
                breached,
                ..
            } => Some(Counted {
                started_ms,
                used_ms: used_ms + hours.business_time_between(since_ms, now),
                breached,
            }),
            Leg::Paused {
                started_ms,
                used_ms,
                breached,
                ..
            } => Some(Counted {
                started_ms,
                used_ms,
                breached,
            }),
            Leg::Idle | Leg::Met { .. } => None,
        }
    }
}

impl Counted {
    /// The leg met now.
    fn met(self) -> Leg {
        Leg::Met {
            used_ms: self.used_ms,
            in_time: !self.breached,
        }
    }

    /// The event that says `target` was met now.
    fn event(self, target: Target) -> SlaEvent {
        SlaEvent::Met {
            target,
            in_time: !self.breached,
            used_ms: self.used_ms,
            started_ms: self.started_ms,
        }
    }
}

fn running(now: i64) -> Leg {
    Leg::Running {
        started_ms: now,
        since_ms: now,
        used_ms: 0,
        warned: false,
        breached: false,
    }
}

#[cfg(test)]
#[path = "sla/tests.rs"]
mod tests;
