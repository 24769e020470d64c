//! Focused tests of single mechanisms, with hand-wired replicas (the
//! simulated cluster, `sim.rs` and `sim/`, covers the protocol as a whole).

use super::*;
use crate::address::SocketAddress;
use crate::causal::{CausalContext, ReplicaId, VectorClock};
use crate::causal::{Dot, Retirement};
use crate::store::{Key, Value};

pub(super) fn addr(text: &str) -> SocketAddress {
    SocketAddress::parse(text).unwrap()
}

pub(super) fn key(k: &str) -> Key {
    Key::parse(k).unwrap()
}

pub(super) fn value(json: &str) -> Option<Value> {
    Value::from_json(json).unwrap()
}

/// Hands every request `from` queued for `to` over to `to`, and the
/// replies back; other effects of `from` are kept.
pub(super) fn exchange(from: &mut Replica, to: &mut Replica, now: Millis) {
    let mut kept = Vec::new();
    for effect in from.take_effects() {
        match effect {
            Effect::Send { to: peer, request } if peer == to.me().address => {
                let kind = request.kind();
                let reply = to.handle(request, now);
                let address = to.me().address.clone();
                from.on_reply(&address, kind, Ok(reply), now);
                from.merge_pages(now);
            }
            other => kept.push(other),
        }
    }
    from.outbox.extend(kept);
}

/// Two replicas of a new store that joined each other.
pub(super) fn pair() -> (Replica, Replica) {
    let (a, b) = (addr("10.0.0.1:8085"), addr("10.0.0.2:8085"));
    let view = [a.clone(), b.clone()];
    let mut ra = Replica::new(a, "a", &view, Timing::default(), 0);
    let mut rb = Replica::new(b, "b", &view, Timing::default(), 0);
    for now in [0, 1] {
        ra.tick(now);
        rb.tick(now);
        exchange(&mut ra, &mut rb, now);
        exchange(&mut rb, &mut ra, now);
    }
    assert!(ra.is_ready() && rb.is_ready(), "a new store starts at once");
    ra.take_effects();
    rb.take_effects();
    (ra, rb)
}

/// Delivers every queued write of `from` to `to` and drops other effects.
pub(super) fn deliver_writes(from: &mut Replica, to: &mut Replica, now: Millis) {
    let writes: Vec<Write> = from
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Replicate { write, .. } => Some(Write::clone(&write)),
            _ => None,
        })
        .collect();
    let request = Request::Replicate {
        from: from.me().clone(),
        writes,
    };
    assert!(matches!(to.handle(request, now), Reply::Ack { .. }));
}

/// `from` tells `to` what it has applied, as a heartbeat does.
pub(super) fn heartbeat(from: &Replica, to: &mut Replica, now: Millis) {
    let request = from.heartbeat_for(&to.me().address);
    assert!(matches!(to.handle(request, now), Reply::Heartbeat { .. }));
}

/// Ticks `r` every 50 ms from `from` to `to`.
pub(super) fn run(r: &mut Replica, from: Millis, to: Millis) {
    let mut now = from;
    while now <= to {
        r.tick(now);
        now += 50;
    }
    r.take_effects();
}

#[test]
fn tombstone_is_forgotten_once_every_replica_applied_the_delete() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), value("1"), &ctx).unwrap();
    a.write(key("k"), None, &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    assert_eq!(a.store().tombstones(), 1);
    assert_eq!(b.store().tombstones(), 1);

    // B reports having applied the delete; two collection rounds later
    // (one to set the barrier, one to pass it) A forgets the tombstone.
    heartbeat(&b, &mut a, 20);
    let gc = Timing::default().gc_interval;
    run(&mut a, 30, gc + 30);
    assert_eq!(
        a.store().tombstones(),
        1,
        "forgotten before the barrier passed"
    );
    heartbeat(&b, &mut a, gc + 40);
    run(&mut a, gc + 50, 2 * gc + 200);
    assert_eq!(a.store().tombstones(), 0);
    assert!(a.store().get(&key("k")).is_none());
}

#[test]
fn tombstone_is_kept_while_a_replica_has_not_reported_the_delete() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), value("1"), &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    heartbeat(&b, &mut a, 20);
    // The delete does not reach B (B is cut off): B's last report predates
    // it, so A must not forget it, since B still holds the value.
    a.write(key("k"), None, &ctx).unwrap();
    a.take_effects();
    let timing = Timing::default();
    let now = 4 * timing.gc_interval;
    run(&mut a, 30, now);
    // By now B is suspected down and out of the view; its report still counts.
    assert!(!a.view().contains(&b.me().address));
    assert_eq!(a.store().tombstones(), 1);

    // B comes back and catches up: then the tombstone can go.
    let pull = Request::Pull {
        from: b.me().clone(),
        clock: b.applied().clone(),
    };
    let reply = a.handle(pull, now);
    let a_address = a.me().address.clone();
    b.on_reply(&a_address, Kind::Pull, Ok(reply), now);
    assert!(b.store().get(&key("k")).unwrap().is_tombstone());
    heartbeat(&b, &mut a, now);
    assert!(a.view().contains(&b.me().address));
    run(&mut a, now + 10, now + timing.gc_interval + 10);
    heartbeat(&b, &mut a, now + timing.gc_interval + 20);
    run(
        &mut a,
        now + timing.gc_interval + 30,
        now + 2 * timing.gc_interval + 200,
    );
    assert_eq!(a.store().tombstones(), 0);
}

#[test]
fn a_replica_that_holds_no_copy_gives_none_and_a_starting_one_serves_no_client() {
    let (a, b) = (addr("10.0.0.1:8085"), addr("10.0.0.2:8085"));
    let mut ra = Replica::new(a, "a", std::slice::from_ref(&b), Timing::default(), 0);
    let snapshot = Request::Snapshot {
        from: Member {
            address: b.clone(),
            id: ReplicaId::new(b.as_str(), "b"),
        },
        cursor: 0,
        fresh: true,
    };
    assert!(matches!(
        ra.handle(snapshot, 1),
        Reply::Refused {
            reason: Refusal::NotReady,
            ..
        }
    ));
    let ctx = CausalContext::empty();
    assert_eq!(ra.read(&key("k"), &ctx), Err(Wait::NotReady));
    assert_eq!(
        ra.write(key("k"), value("1"), &ctx).unwrap_err(),
        Wait::NotReady
    );
}

#[test]
fn a_join_under_an_identity_that_wrote_what_the_joiner_lacks_is_refused() {
    let (mut a, b) = pair();
    // B wrote once; A applied it.
    let mut b = b;
    b.write(key("k"), value("1"), &CausalContext::empty())
        .unwrap();
    deliver_writes(&mut b, &mut a, 5);
    // A process drew B's identity again, with an empty state.
    let impostor = Request::Join {
        from: b.me().clone(),
        clock: VectorClock::new(),
        retired: Vec::new(),
        collected: VectorClock::new(),
        fresh: true,
        decisions: Vec::new(),
    };
    assert!(matches!(
        a.handle(impostor, 10),
        Reply::Refused {
            reason: Refusal::IdentityInUse,
            ..
        }
    ));
    // B itself, holding its writes, joins fine.
    let join = b.join_request();
    assert!(matches!(
        a.handle(join, 11),
        Reply::Join { vetted: true, .. }
    ));
}

#[test]
fn a_starting_replica_refused_its_identity_draws_another() {
    let (a, b) = (addr("10.0.0.1:8085"), addr("10.0.0.2:8085"));
    let mut r = Replica::new(a.clone(), "a", &[a, b.clone()], Timing::default(), 0);
    let refused = Reply::Refused {
        from: Member {
            address: b.clone(),
            id: ReplicaId::new(b.as_str(), "b"),
        },
        reason: Refusal::IdentityInUse,
    };
    r.on_reply(&b, Kind::Join, Ok(refused), 1);
    assert!(r
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::Reincarnate)));
    r.reincarnate("fresh");
    assert_eq!(r.me().id.as_str(), "10.0.0.1:8085#fresh");
}

#[test]
fn a_context_naming_a_retired_incarnation_is_satisfied_and_answered_without_it() {
    let (mut a, _) = pair();
    let old = ReplicaId::new("10.0.0.9:8085", "gone");
    a.known.observe(&Dot::new(old.clone(), 3));
    a.store.apply(
        key("k"),
        crate::store::Version {
            value: value("7"),
            dot: Dot::new(old.clone(), 3),
            lamport: 3,
        },
    );
    let named: VectorClock = [(old.clone(), 3)].into_iter().collect();
    let ctx = CausalContext::from_clock(named.clone());
    // Before retirement: echoed as sent, and the read teaches the dot.
    let read = a.read(&key("k"), &ctx).unwrap();
    assert_eq!(read.learned.pruned, None);
    assert_eq!(read.learned.clock, named);
    a.known.retire(
        &old,
        Retirement {
            last: 3,
            ended: true,
        },
    );
    // After: satisfied, and answered without the entry.
    let read = a.read(&key("k"), &ctx).unwrap();
    assert_eq!(read.value, value("7"));
    assert!(read.learned.clock.is_empty());
    assert_eq!(read.learned.pruned, Some(VectorClock::new()));
    // Writes it made beyond the record are waited for, even though it
    // ended: one may still be on its way to a member.
    let later: VectorClock = [(old.clone(), 5)].into_iter().collect();
    let waiting = a.read(&key("k"), &CausalContext::from_clock(later.clone()));
    assert_eq!(waiting, Err(Wait::Missing(later)));
    // A write's dependencies leave it out too.
    let written = a.write(key("j"), value("1"), &ctx).unwrap();
    let printed = written.learned.metadata(&ctx).to_value();
    assert_eq!(printed, serde_json::json!({"10.0.0.1:8085#a": 1}));
    let Some(Effect::Replicate { write, .. }) = a.take_effects().pop() else {
        panic!("the write is queued");
    };
    assert!(write.deps.is_empty());
}

#[test]
fn a_stopping_replica_takes_no_write_and_knows_when_a_member_holds_its_writes() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), value("1"), &ctx).unwrap();
    a.stop_taking_writes();
    assert_eq!(
        a.write(key("k"), value("2"), &ctx).unwrap_err(),
        Wait::ShuttingDown
    );
    assert!(a.read(&key("k"), &ctx).is_ok(), "reads go on");
    assert!(!a.stats().ready);
    let b_address = b.me().address.clone();
    assert_eq!(a.handover().lacking, vec![b_address.clone()]);
    assert!(a.handover().held_by.is_empty());
    deliver_writes(&mut a, &mut b, 10);
    a.ask_clocks(20);
    exchange(&mut a, &mut b, 20);
    let handover = a.handover();
    assert_eq!(handover.held_by, vec![b_address]);
    assert!(handover.lacking.is_empty());
    assert_eq!((handover.written, handover.best), (1, 1));
}

#[test]
fn dns_answers_add_members_and_remove_the_long_unlisted() {
    let me = addr("10.0.0.1:8085");
    let mut r = Replica::new(
        me.clone(),
        "a",
        std::slice::from_ref(&me),
        Timing::default(),
        0,
    );
    let (b, c) = (addr("10.0.0.2:8085"), addr("10.0.0.3:8085"));
    r.set_dns_members(vec![me.clone(), b.clone(), c.clone()], 1);
    assert_eq!(
        r.view().print(),
        "10.0.0.1:8085,10.0.0.2:8085,10.0.0.3:8085"
    );
    // An empty answer (a resolver hiccup) changes nothing.
    r.set_dns_members(Vec::new(), 2);
    assert_eq!(r.view().len(), 3);
    // C stops being listed: it leaves after DNS_MISSES_TO_LEAVE answers.
    for n in 1..DNS_MISSES_TO_LEAVE {
        r.set_dns_members(vec![me.clone(), b.clone()], 2 + n as Millis);
        assert!(r.view().contains(&c), "removed after {n} answers");
    }
    r.set_dns_members(vec![me.clone(), b.clone()], 10);
    assert!(!r.view().contains(&c));
    assert!(!r.view().knows(&c), "forgotten: no probes, no say");
    assert!(r
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::DropQueue { peer } if *peer == c)));
    // Listed again (the deployment scaled back up): it rejoins.
    r.set_dns_members(vec![me.clone(), b.clone(), c.clone()], 11);
    assert!(r.view().contains(&c));
}

#[test]
fn a_listing_that_resumes_resets_the_count_of_misses() {
    let me = addr("10.0.0.1:8085");
    let b = addr("10.0.0.2:8085");
    let mut r = Replica::new(
        me.clone(),
        "a",
        &[me.clone(), b.clone()],
        Timing::default(),
        0,
    );
    for round in 0..10 {
        // Listed every other answer: never DNS_MISSES_TO_LEAVE misses in a row.
        let listed = if round % 2 == 0 {
            vec![me.clone()]
        } else {
            vec![me.clone(), b.clone()]
        };
        r.set_dns_members(listed, round);
    }
    assert!(r.view().contains(&b));
}

#[test]
fn removing_an_address_not_in_the_view_changes_nothing() {
    let (mut ra, mut rb) = pair();
    let stranger = addr("10.0.0.9:8085");
    assert!(
        !ra.view_remove(stranger.clone()),
        "not in the view: refused"
    );
    assert!(ra.take_effects().is_empty(), "nothing relayed");
    // The refused removal left no eviction behind: the address joins later.
    let mut rc = Replica::new(
        stranger.clone(),
        "c",
        &[ra.me().address.clone()],
        Timing::default(),
        5,
    );
    rc.tick(5);
    exchange(&mut rc, &mut ra, 5);
    assert!(ra.view().contains(&stranger));
    // And a member that is known is still removed.
    let b = rb.me().address.clone();
    assert!(ra.view_remove(b.clone()));
    assert!(!ra.view().contains(&b));
    rb.take_effects();
}

#[test]
fn a_starting_replica_gives_no_pull_its_store_is_a_copy_in_progress() {
    let (mut a, _) = pair();
    let view = [addr("10.0.0.1:8085"), addr("10.0.0.3:8085")];
    let mut starting = Replica::new(addr("10.0.0.3:8085"), "s", &view, Timing::default(), 0);
    starting.tick(0);
    exchange(&mut starting, &mut a, 1);
    a.take_effects();
    assert!(starting
        .view()
        .peer(&a.me().address)
        .is_some_and(|p| p.trusted()));
    assert!(!starting.is_synced());
    let pull = Request::Pull {
        from: a.me().clone(),
        clock: VectorClock::new(),
    };
    let reply = starting.handle(pull, 2);
    assert!(
        matches!(
            reply,
            Reply::Refused {
                reason: Refusal::NotReady,
                ..
            }
        ),
        "{reply:?}"
    );
}

#[test]
fn a_starting_replica_takes_no_view_change() {
    let (a, b) = (addr("10.0.0.1:8085"), addr("10.0.0.2:8085"));
    let mut r = Replica::new(a.clone(), "a", &[a, b.clone()], Timing::default(), 0);
    let c = addr("10.0.0.3:8085");
    assert_eq!(
        r.change_view(ViewChange::Add(c.clone()), 1),
        Err(Wait::NotReady)
    );
    assert_eq!(r.change_view(ViewChange::Remove(b), 1), Err(Wait::NotReady));
    assert!(!r.view().contains(&c), "a refused change changed the view");
    let (mut ra, _) = pair();
    assert_eq!(ra.change_view(ViewChange::Add(c.clone()), 2), Ok(true));
    assert_eq!(ra.change_view(ViewChange::Add(c), 3), Ok(false));
}

#[test]
fn a_member_the_shard_map_moved_is_left_out_locally_and_heard_again_once_placed_back() {
    let (mut ra, rb) = pair();
    let b = rb.me().address.clone();
    assert!(ra.leave_out(b.clone(), 10));
    assert!(!ra.view().contains(&b));
    let relayed = ra
        .take_effects()
        .into_iter()
        .filter(|e| matches!(e, Effect::Send { .. }))
        .count();
    assert_eq!(relayed, 0, "a map's change is never relayed");
    // Heartbeats of the old map do not bring it back.
    let request = rb.heartbeat_for(&ra.me().address);
    assert!(matches!(
        ra.handle(request, 20),
        Reply::Refused {
            reason: Refusal::Removed,
            ..
        }
    ));
    assert!(!ra.view().contains(&b), "refused while left out");
    // A later map places it back: it is heard again at once.
    ra.allow(&b);
    let request = rb.heartbeat_for(&ra.me().address);
    assert!(!matches!(
        ra.handle(request, 30),
        Reply::Refused {
            reason: Refusal::Removed,
            ..
        }
    ));
    assert!(!ra.view().is_evicted(&b), "heard again once placed back");
}

#[test]
fn leaving_out_expires_so_an_address_is_never_refused_for_good() {
    let (mut ra, rb) = pair();
    let b = rb.me().address.clone();
    let timeout = Timing::default().suspect_timeout;
    assert!(ra.leave_out(b.clone(), 10));
    run(&mut ra, 20, timeout + 100);
    assert!(!ra.view().is_evicted(&b), "the refusal lapsed");
}

/// The pages a replica asked `giver` for (their cursors), effects dropped.
fn pages_asked(r: &mut Replica) -> Vec<u32> {
    let asked = r.take_effects().into_iter().filter_map(|e| match e {
        Effect::Send {
            request: Request::Snapshot { cursor, .. },
            ..
        } => Some(cursor),
        _ => None,
    });
    asked.collect()
}

#[test]
fn a_copy_asks_for_the_next_page_before_it_merges_the_one_that_came() {
    let (mut a, _b) = pair();
    a.timing.page_keys = 1;
    let empty = CausalContext::empty();
    a.write(key("x"), value("1"), &empty).unwrap();
    a.write(key("y"), value("2"), &empty).unwrap();
    let giver = a.me().clone();
    let view = [giver.address.clone()];
    let mut d = Replica::new(addr("10.0.0.9:8085"), "d", &view, Timing::default(), 0);
    d.start_transfer(&giver.address, true, 10);
    assert_eq!(pages_asked(&mut d), [0]);
    let mut cursor = 0;
    for (n, now) in [(1, 11), (2, 12)] {
        let ask = Request::Snapshot {
            from: d.me().clone(),
            cursor,
            fresh: true,
        };
        let reply = a.handle(ask, now);
        d.on_reply(&giver.address, Kind::Snapshot, Ok(reply), now);
        // The next page (if any) is asked for at once; this one is merged
        // only when told.
        let next = pages_asked(&mut d);
        assert_eq!(d.store().held(), n - 1, "page {n} merged before asked to");
        d.merge_pages(now);
        assert_eq!(d.store().held(), n);
        match n {
            1 => assert!(
                next.len() == 1 && next[0] > 0,
                "page 2 not asked for: {next:?}"
            ),
            _ => assert!(next.is_empty(), "a page past the last asked for"),
        }
        cursor = next.first().copied().unwrap_or(0);
    }
    // The last page merged, the copy is swept and counted at once.
    assert!(!d.is_copying());
    assert_eq!(d.read(&key("y"), &empty).unwrap().value, value("2"));
}
