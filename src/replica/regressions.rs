//! Interleavings that once went wrong, each pinned by the
//! test that showed it: hand-wired replicas, every message delivered (or
//! not) by the test.

use super::tests::{addr, exchange, heartbeat, key, run, value};
use super::*;
use crate::causal::{Dot, ReplicaId};

/// The writes `from` queued, taken from its effects (the rest dropped).
fn writes_of(from: &mut Replica) -> Vec<Write> {
    from.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Replicate { write, .. } => Some(Write::clone(&write)),
            _ => None,
        })
        .collect()
}

/// `writes` of `from` arrive at `to` in one batch.
fn hand(from: &Member, writes: Vec<Write>, to: &mut Replica, now: Millis) {
    let request = Request::Replicate {
        from: from.clone(),
        writes,
    };
    let reply = to.handle(request, now);
    assert!(matches!(reply, Reply::Ack { .. }), "{reply:?}");
}

/// Three replicas of a new store that joined each other.
fn trio() -> [Replica; 3] {
    let addrs = [
        addr("10.0.0.1:8085"),
        addr("10.0.0.2:8085"),
        addr("10.0.0.3:8085"),
    ];
    let mut rs = ["a", "b", "c"].map(|inc| inc.to_string());
    let mut rs: [Replica; 3] = std::array::from_fn(|i| {
        let inc = std::mem::take(&mut rs[i]);
        Replica::new(addrs[i].clone(), &inc, &addrs, Timing::default(), 0)
    });
    for now in [0, 1, 2] {
        for r in rs.iter_mut() {
            r.tick(now);
        }
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    let [x, y] = rs.get_disjoint_mut([i, j]).expect("distinct");
                    exchange(x, y, now);
                }
            }
        }
    }
    for r in rs.iter_mut() {
        assert!(r.is_ready());
        r.take_effects();
    }
    rs
}

/// `old` restarts as incarnation `inc` (its `VIEW`: A, `peers` and
/// itself), joins A and reports A's clock (the one it copied) from `now`;
/// A retires `old` at its tick at `tick_at`.
fn restart_and_retire(
    a: &mut Replica,
    peers: &[SocketAddress],
    old: &Member,
    inc: &str,
    (now, tick_at): (Millis, Millis),
) {
    let mut view = vec![a.me().address.clone(), old.address.clone()];
    view.extend_from_slice(peers);
    let restarted = Replica::new(old.address.clone(), inc, &view, Timing::default(), now);
    assert!(matches!(
        a.handle(restarted.join_request(), now),
        Reply::Join { .. }
    ));
    let report = Request::Heartbeat {
        from: restarted.me().clone(),
        clock: a.applied().clone(),
        retired: Vec::new(),
        decided: 0,
    };
    assert!(matches!(
        a.handle(report, now + 10),
        Reply::Heartbeat { .. }
    ));
    a.tick(tick_at);
    a.take_effects();
    assert!(a.known().is_retired(&old.id), "A retired {}", old.id);
}

/// `from` heartbeats `to`, which refuses it as removed from the view.
fn refused_as_removed(from: &mut Replica, to: &mut Replica, now: Millis) {
    let address = to.me().address.clone();
    let reply = to.handle(from.heartbeat_for(&address), now);
    let removed = matches!(
        reply,
        Reply::Refused {
            reason: Refusal::Removed,
            ..
        }
    );
    assert!(removed, "{reply:?}");
    from.on_reply(&address, Kind::Heartbeat, Ok(reply), now);
}

/// The context a client keeps after `read`.
fn context_after(read: &ReadResult, sent: &CausalContext) -> CausalContext {
    CausalContext::parse(Some(&read.learned.metadata(sent).to_value())).unwrap()
}

/// C's second write is on the wire to B when C crashes; C restarts as C2,
/// and A retires C (ended) at its first write. B then applies the second
/// and serves it: a context naming it must make A wait, not read stale
/// data, and B's write that depends on it must wait at A.
#[test]
fn a_write_of_an_ended_incarnation_still_on_its_way_is_waited_for() {
    let [mut a, mut b, mut c] = trio();
    let empty = CausalContext::empty();
    let c_member = c.me().clone();
    c.write(key("k"), value("1"), &empty).unwrap();
    let first = writes_of(&mut c);
    hand(&c_member, first.clone(), &mut a, 10);
    hand(&c_member, first, &mut b, 10);
    heartbeat(&b, &mut a, 20);
    c.write(key("k"), value("2"), &empty).unwrap();
    let second = writes_of(&mut c);
    drop(c);
    // C restarts as C2, joins A and reports (the clock it copied) A's.
    let peers = [b.me().address.clone()];
    restart_and_retire(&mut a, &peers, &c_member, "c2", (30, 50));
    // The write on the wire reaches B; a client reads it there, writes j.
    hand(&c_member, second, &mut b, 60);
    let read = b.read(&key("k"), &empty).unwrap();
    assert_eq!(read.value, value("2"));
    let ctx = context_after(&read, &empty);
    b.write(key("j"), value("3"), &ctx).unwrap();
    let b_member = b.me().clone();
    hand(&b_member, writes_of(&mut b), &mut a, 70);
    let second_dot = Dot::new(c_member.id.clone(), 2);
    assert!(!a.known().contains(&second_dot));
    assert_eq!(a.known().count(&b_member.id), 0, "B's write applied early");
    assert!(matches!(a.read(&key("k"), &ctx), Err(Wait::Missing(_))));
}

/// A running replica copying a member's state gives the copy up (the giver
/// died) after merging a page holding a write only the giver had: it must
/// not keep serving a version of a write it does not count.
#[test]
fn an_abandoned_copy_leaves_no_version_of_an_uncounted_write() {
    let [mut a, mut b, mut c] = trio();
    c.timing.page_keys = 1;
    let empty = CausalContext::empty();
    let c_member = c.me().clone();
    c.write(key("k"), value("1"), &empty).unwrap();
    c.write(key("z"), value("1"), &empty).unwrap();
    let both = writes_of(&mut c);
    hand(&c_member, both.clone(), &mut a, 10);
    hand(&c_member, both, &mut b, 10);
    // C overwrites k; the write is still in C's queues when A copies.
    c.write(key("k"), value("2"), &empty).unwrap();
    writes_of(&mut c);
    a.start_transfer(&c_member.address, false, 20);
    exchange(&mut a, &mut c, 20);
    assert!(a.is_copying());
    drop(c);
    for t in 0..10 {
        let now = 1000 + t * 600;
        a.tick(now);
        for effect in a.take_effects() {
            if let Effect::Send { to, request } = effect {
                if to == c_member.address {
                    let failed = Err("connection refused".into());
                    a.on_reply(&to, request.kind(), failed, now);
                }
            }
        }
    }
    assert!(!a.is_copying(), "the copy was given up");
    let read = a.read(&key("k"), &empty).unwrap();
    assert_eq!(
        read.value,
        value("1"),
        "A serves a version it does not count"
    );
    let ctx = context_after(&read, &empty);
    assert!(a.read(&key("k"), &ctx).is_ok());
}

/// A tombstone written by an incarnation retired after the gc barrier was
/// taken must wait for that barrier's successor: a write concurrent with
/// the delete may still be on its way, and must meet the tombstone.
#[test]
fn a_retired_writer_s_tombstone_waits_for_concurrent_writes() {
    let [mut a, mut m, mut x] = trio();
    let empty = CausalContext::empty();
    let (xm, mm) = (x.me().clone(), m.me().clone());
    // A tombstone exists, so that a gc barrier is taken at t=5000.
    m.write(key("t"), value("1"), &empty).unwrap();
    m.write(key("t"), None, &empty).unwrap();
    let ws = writes_of(&mut m);
    hand(&mm, ws.clone(), &mut a, 10);
    hand(&mm, ws, &mut x, 10);
    for n in 0..5 {
        x.write(key(&format!("x{n}")), value("1"), &empty).unwrap();
    }
    x.write(key("K"), value("1"), &empty).unwrap();
    let ws = writes_of(&mut x);
    hand(&xm, ws.clone(), &mut a, 20);
    hand(&xm, ws, &mut m, 20);
    heartbeat(&m, &mut a, 30);
    heartbeat(&x, &mut a, 30);
    a.tick(5000);
    a.take_effects();
    // M writes K, concurrently with X's delete of K, which wins by rank;
    // M's write is on a slow link to A.
    m.write(key("K"), value("2"), &empty).unwrap();
    let slow = writes_of(&mut m);
    let read = x.read(&key("K"), &empty).unwrap();
    x.write(key("K"), None, &context_after(&read, &empty))
        .unwrap();
    let delete = writes_of(&mut x);
    hand(&xm, delete.clone(), &mut a, 5100);
    hand(&xm, delete, &mut m, 5100);
    assert!(m.store().get(&key("K")).unwrap().is_tombstone());
    // M reports; X ends and A retires it.
    heartbeat(&m, &mut a, 5200);
    restart_and_retire(
        &mut a,
        std::slice::from_ref(&mm.address),
        &xm,
        "x2",
        (5300, 5400),
    );
    // The M-A link is down a while (M a suspect), then heals.
    for t in (5450..=10100).step_by(50) {
        a.tick(t);
        a.take_effects();
    }
    heartbeat(&m, &mut a, 10150);
    hand(&mm, slow, &mut a, 10200);
    let at_a = a.store().get(&key("K")).map(|v| v.value);
    let at_m = m.store().get(&key("K")).map(|v| v.value);
    assert_eq!(at_a, at_m, "the stores disagree on K");
}

/// The operator removes B at A, C applies the removal, and A adds B back
/// but only B hears of it before A is gone. C refuses B as removed; B's
/// answer is a join, which carries the decision that added it back: C
/// learns it and hears B again.
#[test]
fn a_re_add_only_the_re_added_replica_heard_reaches_the_others_through_it() {
    let [mut a, mut b, mut c] = trio();
    let b_address = b.me().address.clone();
    assert!(a.view_remove(b_address.clone()));
    exchange(&mut a, &mut c, 10);
    exchange(&mut a, &mut b, 10);
    assert!(!c.view().contains(&b_address), "C applied the removal");
    assert!(a.view_add(b_address.clone(), 20));
    exchange(&mut a, &mut b, 20);
    a.take_effects();
    drop(a);
    // B heartbeats C: refused as removed, it joins C instead.
    b.take_effects();
    refused_as_removed(&mut b, &mut c, 30);
    exchange(&mut b, &mut c, 31);
    assert!(c.view().contains(&b_address), "C learned the re-add from B");
}

/// The operator removes C at A while C is cut off; A and B go on, and
/// what C never saw may be retired and pruned from clients' contexts. When
/// C is refused as removed it must serve no client (it cannot tell a
/// pruned context from one that names nothing), and it serves again once
/// it is added back and a member answers its join.
#[test]
fn a_replica_refused_as_removed_serves_no_client_until_added_back() {
    let [mut a, mut b, mut c] = trio();
    let empty = CausalContext::empty();
    let c_address = c.me().address.clone();
    c.write(key("k"), value("1"), &empty).unwrap();
    c.take_effects();
    assert!(a.view_remove(c_address.clone()));
    exchange(&mut a, &mut b, 10);
    a.take_effects();
    let a_address = a.me().address.clone();
    refused_as_removed(&mut c, &mut a, 20);
    assert_eq!(c.read(&key("k"), &empty), Err(Wait::Removed));
    assert_eq!(
        c.write(key("k"), value("2"), &empty).unwrap_err(),
        Wait::Removed
    );
    assert!(!c.stats().ready && c.stats().removed);
    // C's answer to the refusal was a join; refused again while removed.
    exchange(&mut c, &mut a, 30);
    assert_eq!(c.read(&key("k"), &empty), Err(Wait::Removed));
    // Added back: C's next join is answered and it serves again.
    assert!(a.view_add(c_address.clone(), 40));
    exchange(&mut a, &mut c, 40);
    c.rejoin(&a_address, 10_000);
    exchange(&mut c, &mut a, 10_000);
    assert!(c.stats().ready, "{:?}", c.stats());
    assert_eq!(c.read(&key("k"), &empty).unwrap().value, value("1"));
}

/// The relay of its own removal reaches C: it stops serving at once. The
/// relay of its re-add is not enough (a replica that removed it may not
/// know): it serves again once A, which removed it, hears it.
#[test]
fn a_replica_told_of_its_own_removal_serves_no_client_until_heard_again() {
    let [mut a, _b, mut c] = trio();
    let empty = CausalContext::empty();
    let c_address = c.me().address.clone();
    assert!(a.view_remove(c_address.clone()));
    exchange(&mut a, &mut c, 10);
    assert_eq!(c.read(&key("k"), &empty), Err(Wait::Removed));
    assert!(a.view_add(c_address, 20));
    exchange(&mut a, &mut c, 20);
    assert_eq!(c.read(&key("k"), &empty), Err(Wait::Removed));
    let a_address = a.me().address.clone();
    let beat = c.heartbeat_for(&a_address);
    let reply = a.handle(beat, 30);
    c.on_reply(&a_address, Kind::Heartbeat, Ok(reply), 30);
    // (A re-added C as a new member: C is asked to join it first.)
    exchange(&mut c, &mut a, 31);
    assert!(c.read(&key("k"), &empty).is_ok(), "{:?}", c.stats());
}

/// A keeps refusing C as removed: C does not forget A (a refusal is a sign
/// of life), so it does not start serving when A would have been forgotten.
#[test]
fn a_replica_that_keeps_refusing_is_not_forgotten() {
    let [mut a, _b, mut c] = trio();
    let empty = CausalContext::empty();
    let (a_address, c_address) = (a.me().address.clone(), c.me().address.clone());
    assert!(a.view_remove(c_address));
    a.take_effects();
    let timeout = c.timing.suspect_timeout + c.timing.failure_timeout;
    let mut now = 10;
    while now < 2 * timeout {
        let beat = c.heartbeat_for(&a_address);
        let reply = a.handle(beat, now);
        c.on_reply(&a_address, Kind::Heartbeat, Ok(reply), now);
        c.tick(now);
        c.take_effects();
        now += 500;
    }
    assert!(c.view().knows(&a_address), "C forgot A");
    assert_eq!(c.read(&key("k"), &empty), Err(Wait::Removed));
}

/// A pulls from B; before the answer, an operator removes B and adds it
/// back at A (B may now hold what A forgot meanwhile). B's answer must not
/// be merged: only a trusted peer's versions are, and A sends no pull to a
/// peer it does not trust.
#[test]
fn a_pull_answered_by_a_peer_no_longer_trusted_is_not_merged() {
    let [mut a, mut b, _c] = trio();
    let empty = CausalContext::empty();
    b.write(key("k"), value("1"), &empty).unwrap();
    b.take_effects();
    let b_address = b.me().address.clone();
    let wanted = b.applied().clone();
    a.catch_up(&wanted, 10);
    let pulls: Vec<Request> = a
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send { to, request } if to == b_address && request.kind() == Kind::Pull => {
                Some(request)
            }
            _ => None,
        })
        .collect();
    assert_eq!(pulls.len(), 1, "A pulls from B");
    assert!(a.view_remove(b_address.clone()));
    assert!(a.view_add(b_address.clone(), 20));
    a.take_effects();
    let reply = b.handle(pulls.into_iter().next().unwrap(), 30);
    assert!(matches!(reply, Reply::Pull { .. }), "{reply:?}");
    a.on_reply(&b_address, Kind::Pull, Ok(reply), 30);
    assert!(
        a.store().get(&key("k")).is_none(),
        "merged an untrusted peer's versions"
    );
    a.catch_up(&wanted, 40_000);
    let pulled = a.take_effects().into_iter().any(|e| {
        matches!(e, Effect::Send { to, request } if to == b_address && request.kind() == Kind::Pull)
    });
    assert!(!pulled, "pulled from a peer not trusted");
}

/// Three replicas that each lack what another forgot all copy at once: a
/// running replica that is copying must still give its state to another
/// running one (or they wait on each other for good), never to one that
/// is starting.
#[test]
fn a_running_replica_that_is_copying_gives_its_state_to_running_ones_only() {
    let [mut a, _b, c] = trio();
    a.start_transfer(&c.me().address, true, 10);
    assert!(!a.is_ready(), "a blocking copy makes A not ready");
    assert!(
        matches!(a.page(0, false), Reply::Snapshot { .. }),
        "a running copier was refused"
    );
    let refused = matches!(
        a.page(0, true),
        Reply::Refused {
            reason: Refusal::NotReady,
            ..
        }
    );
    assert!(refused, "a starting replica got the state of one not ready");
}

/// A, B and C, where C wrote once (both others applied it) and crashed:
/// A, B, and the member C was.
fn trio_whose_c_wrote_once_and_crashed() -> (Replica, Replica, Member) {
    let [mut a, mut b, mut c] = trio();
    let c_member = c.me().clone();
    c.write(key("k"), value("1"), &CausalContext::empty())
        .unwrap();
    let first = writes_of(&mut c);
    hand(&c_member, first.clone(), &mut a, 10);
    hand(&c_member, first, &mut b, 10);
    (a, b, c_member)
}

/// C's address leaves A's view (after B told A what it applied, so that A
/// can retire C); returns C's retirement record at A.
fn c_left_and_retired(a: &mut Replica, b: &Replica, c: &Member) -> crate::causal::Retirement {
    assert!(a.leave_out(c.address.clone(), 30));
    heartbeat(b, a, 40);
    run(a, 50, 200);
    a.known().retirement(&c.id).expect("A retired C")
}

/// C crashes; C2 joins A at C's address; then the shard map moves the
/// address out of A's group before C is retired. C's retirement must
/// still say it ended, so that the other groups stop naming C's writes
/// that never reached A's group (lost with it) in what they answer.
#[test]
fn an_incarnation_replaced_at_its_address_is_retired_as_ended_after_the_address_left() {
    let (mut a, b, c_member) = trio_whose_c_wrote_once_and_crashed();
    let view = [a.me().address.clone(), c_member.address.clone()];
    let c2 = Replica::new(c_member.address.clone(), "c2", &view, Timing::default(), 20);
    assert!(matches!(
        a.handle(c2.join_request(), 20),
        Reply::Join { .. }
    ));
    let record = c_left_and_retired(&mut a, &b, &c_member);
    assert_eq!((record.last, record.ended), (1, true));
}

/// The same, with C retired first (its address left the view): a join of
/// C2 heard later still marks the record ended.
#[test]
fn a_retired_incarnation_replaced_at_its_address_is_marked_ended() {
    let (mut a, b, c_member) = trio_whose_c_wrote_once_and_crashed();
    let record = c_left_and_retired(&mut a, &b, &c_member);
    assert_eq!((record.last, record.ended), (1, false));
    // C's address is placed in A's group again; C2 joins.
    a.allow(&c_member.address);
    let view = [a.me().address.clone(), c_member.address.clone()];
    let c2 = Replica::new(
        c_member.address.clone(),
        "c2",
        &view,
        Timing::default(),
        300,
    );
    a.handle(c2.join_request(), 300);
    let record = a.known().retirement(&c_member.id).unwrap();
    assert_eq!((record.last, record.ended), (1, true));
}

/// C crashes and the shard map moves its address out of A's group; the
/// node restarts in another group, so no C2 ever joins A. Hearing that
/// the node restarted (another run) must mark C's retirement ended all
/// the same, whether heard after the retirement or before it.
#[test]
fn an_incarnation_whose_node_restarted_in_another_group_is_retired_as_ended() {
    let elsewhere = |c: &Member| ReplicaId::new(c.address.as_str(), "s2e3.c2");
    // Heard after C was retired.
    let (mut a, b, c_member) = trio_whose_c_wrote_once_and_crashed();
    let record = c_left_and_retired(&mut a, &b, &c_member);
    assert_eq!((record.last, record.ended), (1, false));
    a.note_restarted(&c_member.address, &[elsewhere(&c_member)]);
    let record = a.known().retirement(&c_member.id).unwrap();
    assert_eq!((record.last, record.ended), (1, true));
    // Heard before.
    let (mut a, b, c_member) = trio_whose_c_wrote_once_and_crashed();
    a.note_restarted(&c_member.address, &[elsewhere(&c_member)]);
    let record = c_left_and_retired(&mut a, &b, &c_member);
    assert_eq!((record.last, record.ended), (1, true));
}

/// No incarnation of a restarted node's new run is ended by the news of
/// the restart, even where this group counts it already: not the one the
/// node runs now, nor one it left for another group (which may still be
/// handing on its writes).
#[test]
fn a_restart_ends_the_incarnations_of_former_runs_only() {
    let (mut a, b, c_member) = trio_whose_c_wrote_once_and_crashed();
    // C2, alone, writes once before it joins A.
    let alone = std::slice::from_ref(&c_member.address);
    let mut c2 = Replica::new(c_member.address.clone(), "c2", alone, Timing::default(), 20);
    run(&mut c2, 20, 100);
    let c2_id = c2.me().id.clone();
    a.handle(c2.join_request(), 20);
    c2.write(key("j"), value("2"), &CausalContext::empty())
        .unwrap();
    hand(&c2.me().clone(), writes_of(&mut c2), &mut a, 30);
    assert_eq!(a.known().count(&c2_id), 1);
    // The node has moved on to another group since: C2 is this run's
    // former incarnation.
    let moved_on = ReplicaId::new(c_member.address.as_str(), "s2e3.c3");
    a.note_restarted(&c_member.address, &[c2_id.clone(), moved_on]);
    heartbeat(&b, &mut a, 40);
    run(&mut a, 50, 200);
    assert!(!a.known().is_retired(&c2_id), "C2 is not ended");
    assert!(!a.told_gone.contains_key(&c2_id));
    assert_eq!(a.known().count(&c2_id), 1);
}
