//! Focused tests of single mechanisms, with two hand-wired replicas (the
//! simulated cluster in `sim.rs` covers the protocol as a whole).

use super::*;
use crate::store::Value;

fn addr(text: &str) -> SocketAddress {
    SocketAddress::parse(text).unwrap()
}

fn pair() -> (Replica, Replica) {
    let (a, b) = (addr("10.0.0.1:8085"), addr("10.0.0.2:8085"));
    let view = [a.clone(), b.clone()];
    let ra = Replica::new(a, "a", &view, Timing::default(), 0);
    let rb = Replica::new(b, "b", &view, Timing::default(), 0);
    (ra, rb)
}

fn key(k: &str) -> Key {
    Key::parse(k).unwrap()
}

/// Delivers every queued write of `from` to `to` and drops other effects.
fn deliver_writes(from: &mut Replica, to: &mut Replica, now: Millis) {
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
    to.handle(request, now);
}

/// `from` tells `to` what it has applied, as a heartbeat does.
fn heartbeat(from: &Replica, to: &mut Replica, now: Millis) {
    let request = Request::Heartbeat {
        from: from.me().clone(),
        clock: from.applied().clone(),
    };
    to.handle(request, now);
}

#[test]
fn tombstone_is_forgotten_once_every_replica_applied_the_delete() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), Value::from_json("1").unwrap(), &ctx)
        .unwrap();
    a.write(key("k"), None, &ctx).unwrap();
    deliver_writes(&mut a, &mut b, 10);
    assert_eq!(a.store().tombstones(), 1);
    assert_eq!(b.store().tombstones(), 1);

    // B reports having applied the delete; two collection rounds later
    // (one to set the barrier, one to pass it) A forgets the tombstone.
    heartbeat(&b, &mut a, 20);
    let gc = Timing::default().gc_interval;
    a.tick(gc + 30);
    assert_eq!(
        a.store().tombstones(),
        1,
        "forgotten before the barrier passed"
    );
    heartbeat(&b, &mut a, gc + 40);
    a.tick(2 * gc + 50);
    assert_eq!(a.store().tombstones(), 0);
    assert!(a.store().get(&key("k")).is_none());
}

#[test]
fn tombstone_is_kept_while_a_replica_has_not_reported_the_delete() {
    let (mut a, mut b) = pair();
    let ctx = CausalContext::empty();
    a.write(key("k"), Value::from_json("1").unwrap(), &ctx)
        .unwrap();
    deliver_writes(&mut a, &mut b, 10);
    heartbeat(&b, &mut a, 20);
    // The delete does not reach B (B is cut off): B's last report predates
    // it, so A must not forget it, since B still holds the value.
    a.write(key("k"), None, &ctx).unwrap();
    a.take_effects();
    let timing = Timing::default();
    let mut now = 20;
    for _ in 0..4 {
        now += timing.gc_interval;
        a.tick(now);
    }
    // By now B is suspected down and out of the view; its report still counts.
    assert!(!a.view().contains(&b.me().address));
    assert_eq!(a.store().tombstones(), 1);

    // B comes back and catches up: then the tombstone can go.
    let pull = Request::Pull {
        from: b.me().clone(),
        clock: b.applied().clone(),
    };
    let Reply::Pull { state, .. } = a.handle(pull, now) else {
        panic!("a pull is answered with state");
    };
    b.merge_delta(state, now);
    assert!(b.store().get(&key("k")).unwrap().is_tombstone());
    heartbeat(&b, &mut a, now);
    assert!(a.view().contains(&b.me().address));
    a.tick(now + timing.gc_interval);
    heartbeat(&b, &mut a, now + timing.gc_interval);
    a.tick(now + 2 * timing.gc_interval);
    assert_eq!(a.store().tombstones(), 0);
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
