//! An inbox's waiting queue: tickets nobody owns, served by priority, then
//! by how long they have waited.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::model::{ConversationKey, Priority};

type Place = (Reverse<Priority>, i64, ConversationKey);

/// The queue. Each ticket is in it at most once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue {
    order: BTreeSet<Place>,
    places: HashMap<ConversationKey, Place>,
}

impl Queue {
    /// Puts `key` in line (or moves it, if it is in line already).
    pub(crate) fn push(&mut self, key: ConversationKey, priority: Priority, since_ms: i64) {
        self.remove(key);
        let place = (Reverse(priority), since_ms, key);
        self.order.insert(place);
        self.places.insert(key, place);
    }

    /// Takes `key` out of line; whether it was in it.
    pub(crate) fn remove(&mut self, key: ConversationKey) -> bool {
        match self.places.remove(&key) {
            Some(place) => self.order.remove(&place),
            None => false,
        }
    }

    /// Whether `key` waits in line.
    pub(crate) fn contains(&self, key: ConversationKey) -> bool {
        self.places.contains_key(&key)
    }

    /// The waiting tickets, first served first.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = ConversationKey> + '_ {
        self.order.iter().map(|&(_, _, key)| key)
    }

    /// How many wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.places.len()
    }

    /// Whether nobody waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.places.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_longest_waiting() {
        let mut queue = Queue::default();
        queue.push(1, Priority::Normal, 100);
        queue.push(2, Priority::Normal, 50);
        queue.push(3, Priority::Urgent, 200);
        queue.push(4, Priority::Low, 10);
        assert_eq!(queue.in_order().collect::<Vec<_>>(), [3, 2, 1, 4]);
        // Raising a priority moves it; pushing again never doubles it.
        queue.push(4, Priority::High, 10);
        assert_eq!(queue.in_order().collect::<Vec<_>>(), [3, 4, 2, 1]);
        assert_eq!(queue.len(), 4);
        assert!(queue.remove(3));
        assert!(!queue.remove(3));
        assert!(!queue.contains(3));
        assert_eq!(queue.in_order().collect::<Vec<_>>(), [4, 2, 1]);
    }
}
