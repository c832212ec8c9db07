//! The hash chain: each event's digest, its link after its predecessor, checking a chain from its
//! floor to its head, and what retention may delete.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Event, GENESIS, Hash};

/// Where a chain stands: its last position and hash, and the floor retention left (the last
/// deleted position and its hash; 0 and `GENESIS` before any deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Hash,
    pub floor_seq: i64,
    pub floor_hash: Hash,
}

impl ChainHead {
    pub fn new() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
            floor_seq: 0,
            floor_hash: GENESIS,
        }
    }
}

impl Default for ChainHead {
    fn default() -> Self {
        Self::new()
    }
}

/// An event's place in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub event_id: Uuid,
    pub prev_hash: Hash,
    pub hash: Hash,
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn optional(hasher: &mut Sha256, value: Option<&str>) {
    match value {
        None => hasher.update([0]),
        Some(value) => {
            hasher.update([1]);
            field(hasher, value.as_bytes());
        }
    }
}

/// The digest of an event's content: every field, length-prefixed, in a fixed order, so no two
/// different events share an encoding. Computed when the event is written, and again by
/// verification from what is stored.
pub fn digest(event: &Event) -> Hash {
    let mut h = Sha256::new();
    h.update(b"identity.audit.event.v1");
    h.update(event.id.as_bytes());
    h.update(event.account_id.as_bytes());
    h.update(event.category.number().to_be_bytes());
    field(&mut h, event.action.as_bytes());
    h.update(event.actor.kind.number().to_be_bytes());
    field(&mut h, event.actor.id.as_bytes());
    field(&mut h, event.actor.display.as_bytes());
    match &event.target {
        None => h.update([0]),
        Some(target) => {
            h.update([1]);
            field(&mut h, target.kind.as_bytes());
            field(&mut h, target.id.as_bytes());
            field(&mut h, target.display.as_bytes());
        }
    }
    field(&mut h, event.origin.request_id.as_bytes());
    field(&mut h, event.origin.ip_address.as_bytes());
    field(&mut h, event.origin.user_agent.as_bytes());
    h.update((event.metadata.len() as u64).to_be_bytes());
    for (key, value) in &event.metadata {
        field(&mut h, key.as_bytes());
        field(&mut h, value.as_bytes());
    }
    h.update((event.changes.len() as u64).to_be_bytes());
    for change in &event.changes {
        field(&mut h, change.field.as_bytes());
        optional(&mut h, change.before.as_deref());
        optional(&mut h, change.after.as_deref());
    }
    h.update(event.time.timestamp_micros().to_be_bytes());
    field(&mut h, event.source.as_bytes());
    h.finalize().into()
}

/// The hash of the link at position `seq` after `prev` to the event `event_id` with `digest`.
pub fn link_hash(prev: &Hash, seq: i64, event_id: Uuid, digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(b"identity.audit.link.v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(event_id.as_bytes());
    h.update(digest);
    h.finalize().into()
}

/// An event waiting for its link: its id and the digest of its content when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub event_id: Uuid,
    pub digest: Hash,
}

/// Chains `queued` events (in the order given) after `head`; returns their links and the new head.
pub fn chain(head: ChainHead, queued: &[Queued]) -> (Vec<Link>, ChainHead) {
    let mut head = head;
    let links = queued
        .iter()
        .map(|queued| {
            let seq = head.seq + 1;
            let hash = link_hash(&head.hash, seq, queued.event_id, &queued.digest);
            let link = Link {
                seq,
                event_id: queued.event_id,
                prev_hash: head.hash,
                hash,
            };
            head.seq = seq;
            head.hash = hash;
            link
        })
        .collect();
    (links, head)
}

/// The first thing wrong in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub account_id: Uuid,
    /// The position where the chain breaks.
    pub seq: i64,
    /// The event found there, if any.
    pub event_id: Option<Uuid>,
    pub problem: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "account {} breaks at position {}",
            self.account_id, self.seq
        )?;
        if let Some(id) = self.event_id {
            write!(f, " (event {id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Checks a chain event by event, in position order, from its floor.
#[derive(Debug)]
pub struct ChainCheck {
    account_id: Uuid,
    seq: i64,
    hash: Hash,
    checked: u64,
}

impl ChainCheck {
    pub fn new(account_id: Uuid, head: &ChainHead) -> Self {
        Self {
            account_id,
            seq: head.floor_seq,
            hash: head.floor_hash,
            checked: 0,
        }
    }

    fn broken(&self, seq: i64, event_id: Option<Uuid>, problem: impl Into<String>) -> Break {
        Break {
            account_id: self.account_id,
            seq,
            event_id,
            problem: problem.into(),
        }
    }

    /// The next link, with the event it names (`None`: the event is gone).
    pub fn next(&mut self, link: &Link, event: Option<&Event>) -> Result<(), Break> {
        let expected = self.seq + 1;
        if link.seq != expected {
            return Err(self.broken(
                expected,
                None,
                format!(
                    "position {expected} is missing (the next event found is at {})",
                    link.seq
                ),
            ));
        }
        let Some(event) = event.filter(|event| event.id == link.event_id) else {
            return Err(self.broken(
                link.seq,
                Some(link.event_id),
                "the event is missing (deleted)",
            ));
        };
        if link.prev_hash != self.hash {
            return Err(self.broken(
                link.seq,
                Some(event.id),
                "its predecessor's hash does not match the predecessor",
            ));
        }
        if link_hash(&self.hash, link.seq, event.id, &digest(event)) != link.hash {
            return Err(self.broken(
                link.seq,
                Some(event.id),
                "its content does not match its hash (edited)",
            ));
        }
        self.seq = link.seq;
        self.hash = link.hash;
        self.checked += 1;
        Ok(())
    }

    /// After the last event: the chain must end where its head says. Returns how many events
    /// were checked.
    pub fn finish(self, head: &ChainHead) -> Result<u64, Break> {
        if self.seq != head.seq {
            return Err(self.broken(
                self.seq + 1,
                None,
                format!(
                    "the chain ends at position {} but its head is at {}",
                    self.seq, head.seq
                ),
            ));
        }
        if self.hash != head.hash {
            return Err(self.broken(
                self.seq,
                None,
                "the last event's hash does not match the chain's head",
            ));
        }
        Ok(self.checked)
    }
}

/// The last position retention may delete, from the next links after the floor in position order
/// with their events' times: the end of the run of events older than `cutoff` at the start (a
/// newer event stops it, so what is kept is always a whole suffix of the chain).
pub fn purge_through(
    floor_seq: i64,
    next: &[(i64, DateTime<Utc>)],
    cutoff: DateTime<Utc>,
) -> Option<i64> {
    let through = next
        .iter()
        .take_while(|(_, time)| *time < cutoff)
        .last()
        .map(|(seq, _)| *seq)?;
    (through > floor_seq).then_some(through)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::audit::{Category, Change, Draft, EventActor, Origin, Target, action};

    fn event(n: u32) -> Event {
        Draft::new(action::GROUP_CREATED, EventActor::system())
            .target(Target::new("group", n, "Editors"))
            .changes([Change::new("name", None::<String>, Some("Editors"))])
            .meta("n", n)
            .into_event(
                Uuid::from_u128(7),
                &Origin::default(),
                DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap_or_default(),
            )
    }

    fn queued(events: &[Event]) -> Vec<Queued> {
        events
            .iter()
            .map(|event| Queued {
                event_id: event.id,
                digest: digest(event),
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_and_any_edit_or_removal_breaks_it() {
        let account = Uuid::from_u128(7);
        let events: Vec<Event> = (0..5).map(event).collect();
        let (links, head) = chain(ChainHead::new(), &queued(&events));
        let verify = |events: &[(Event, Link)]| {
            let mut check = ChainCheck::new(account, &ChainHead::new());
            for (event, link) in events {
                check.next(link, Some(event))?;
            }
            check.finish(&head)
        };
        let pairs: Vec<(Event, Link)> = events.iter().cloned().zip(links.clone()).collect();
        assert_eq!(verify(&pairs), Ok(5));

        let mut edited = pairs.clone();
        edited[2].0.action = "group.deleted".to_owned();
        let broken = verify(&edited).unwrap_err();
        assert_eq!((broken.seq, broken.event_id), (3, Some(events[2].id)));

        let mut removed = pairs.clone();
        removed.remove(1);
        assert_eq!(verify(&removed).unwrap_err().seq, 2);

        let mut gone = ChainCheck::new(account, &ChainHead::new());
        gone.next(&pairs[0].1, Some(&pairs[0].0)).unwrap();
        let missing = gone.next(&pairs[1].1, None).unwrap_err();
        assert_eq!((missing.seq, missing.event_id), (2, Some(events[1].id)));

        let mut tail = pairs.clone();
        tail.pop();
        assert_eq!(verify(&tail).unwrap_err().seq, 5);

        // A rewritten event with a recomputed hash still fails at its successor.
        let mut forged = pairs;
        forged[1].0.actor.display = "someone else".to_owned();
        forged[1].1.hash = link_hash(
            &forged[1].1.prev_hash,
            2,
            forged[1].0.id,
            &digest(&forged[1].0),
        );
        assert_eq!(verify(&forged).unwrap_err().seq, 3);
    }

    #[test]
    fn a_purged_prefix_leaves_a_chain_that_verifies_from_its_floor() {
        let account = Uuid::from_u128(7);
        let events: Vec<Event> = (0..6).map(event).collect();
        let (links, mut head) = chain(ChainHead::new(), &queued(&events));
        let times: Vec<(i64, DateTime<Utc>)> = links
            .iter()
            .zip(&events)
            .map(|(link, event)| (link.seq, event.time))
            .collect();
        let cutoff = events[3].time;
        let through = purge_through(0, &times, cutoff).unwrap_or_default();
        assert_eq!(through, 3);
        head.floor_seq = through;
        head.floor_hash = links[2].hash;
        let mut check = ChainCheck::new(account, &head);
        for (event, link) in events.iter().zip(&links).skip(3) {
            check.next(link, Some(event)).unwrap();
        }
        assert_eq!(check.finish(&head), Ok(3));
        assert_eq!(purge_through(3, &times[3..], cutoff), None);
        let later = events[5].time + Duration::seconds(1);
        assert_eq!(purge_through(3, &times[3..], later), Some(6));
        // A newer event early in the chain keeps everything after it.
        let mut mixed = times.clone();
        mixed[1].1 = later;
        assert_eq!(purge_through(0, &mixed, cutoff), Some(1));
    }

    #[test]
    fn every_field_is_in_the_hash() {
        let base = event(1);
        let hash = digest(&base);
        type Edit = Box<dyn Fn(&mut Event)>;
        let variants: Vec<Edit> = vec![
            Box::new(|e| e.origin.ip_address = "10.0.0.1".to_owned()),
            Box::new(|e| e.origin.user_agent = "x".to_owned()),
            Box::new(|e| e.origin.request_id = "r".to_owned()),
            Box::new(|e| e.target = None),
            Box::new(|e| e.changes[0].before = Some(String::new())),
            Box::new(|e| {
                e.metadata.insert("m".to_owned(), String::new());
            }),
            Box::new(|e| e.time += Duration::microseconds(1)),
            Box::new(|e| e.source = "dam".to_owned()),
            Box::new(|e| e.category = Category::MediaLibrary),
        ];
        for change in variants {
            let mut edited = base.clone();
            change(&mut edited);
            assert_ne!(digest(&edited), hash, "{edited:?}");
        }
        let link = link_hash(&GENESIS, 1, base.id, &hash);
        assert_ne!(link_hash(&GENESIS, 2, base.id, &hash), link);
        assert_ne!(link_hash(&link, 1, base.id, &hash), link);
    }
}
