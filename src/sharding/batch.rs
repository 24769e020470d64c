//! Client requests relayed to a member in batches.
//!
//! A request relayed on its own costs the relaying node a request to the
//! member and the member a request of its own: on a busy node, that is
//! most of what serving it costs. So each HTTP worker keeps, per member it
//! relays to, a queue and at most [`IN_FLIGHT`] batches under way: a
//! request is sent at once when fewer are, else it joins the next batch,
//! which leaves as soon as one under way is answered. A lone request is
//! therefore never held back, and under load one exchange carries many.
//!
//! The member serves the requests of a batch at the same time and streams
//! each answer as it is ready ([`super::batch_wire`]), so a request that
//! waits (for its context, or for a reshard) does not hold back the others
//! of its batch; and a batch not answered within [`SLOW`] stops counting
//! as under way, so it does not hold back the requests that come next.
//! A member that does not know batches (an older version) answers 404: its
//! requests are then relayed one by one.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::batch_wire::{encode_batch, Answers, Relayed, MAX_BATCH};
use crate::address::SocketAddress;
use crate::transport::{self, BatchFailure, Forwarded};

/// Where members take batches (under `/internal/v1`).
pub use crate::transport::RELAY_BATCH_PATH as BATCH_PATH;

/// Most batches a worker has under way to one member.
const IN_FLIGHT: usize = 2;

/// How long a batch may take before it stops counting as under way.
const SLOW: Duration = Duration::from_millis(10);

/// Most body bytes of one batch (a request larger than this goes alone).
const BATCH_BYTES: usize = 1 << 20;

type Answer = Result<Forwarded, String>;

/// A request waiting for its answer.
struct Pending {
    request: Rc<Relayed>,
    reply: oneshot::Sender<Answer>,
}

/// What one worker relays to one member.
struct Pipe {
    to: SocketAddress,
    token: Option<String>,
    deadline: Duration,
    queue: RefCell<VecDeque<Pending>>,
    /// Batches under way.
    senders: Cell<usize>,
}

thread_local! {
    static PIPES: RefCell<HashMap<SocketAddress, Rc<Pipe>>> = RefCell::default();
}

/// Relays `request` to `to` (in a batch, or alone if `to` does not take
/// batches) and waits for its answer, at most `deadline`.
pub async fn relay(
    to: &SocketAddress,
    request: Rc<Relayed>,
    token: Option<&str>,
    deadline: Duration,
) -> Answer {
    let pipe = PIPES.with(|pipes| {
        let mut pipes = pipes.borrow_mut();
        if let Some(pipe) = pipes.get(to) {
            return pipe.clone();
        }
        let pipe = Rc::new(Pipe {
            to: to.clone(),
            token: token.map(str::to_string),
            deadline,
            queue: RefCell::default(),
            senders: Cell::new(0),
        });
        pipes.insert(to.clone(), pipe.clone());
        pipe
    });
    let (reply, answer) = oneshot::channel();
    pipe.queue
        .borrow_mut()
        .push_back(Pending { request, reply });
    if pipe.senders.get() < IN_FLIGHT {
        pipe.senders.set(pipe.senders.get() + 1);
        actix_rt::spawn(send_batches(pipe));
    }
    match tokio::time::timeout(deadline, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err("the relay stopped".into()),
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

/// Sends what is queued, a batch at a time, until nothing is (or its
/// batch was slow, and it gave its place to another sender).
async fn send_batches(pipe: Rc<Pipe>) {
    loop {
        let batch = next_batch(&pipe);
        if batch.is_empty() {
            pipe.senders.set(pipe.senders.get() - 1);
            return;
        }
        let mut exchange = std::pin::pin!(exchange(&pipe, batch));
        let slow = tokio::time::sleep(SLOW);
        tokio::select! {
            () = &mut exchange => continue,
            () = slow => {}
        }
        // A request of the batch waits (for its context, for a reshard):
        // the batch no longer counts as under way, so that the requests
        // that come meanwhile do not wait behind it.
        pipe.senders.set(pipe.senders.get() - 1);
        if !pipe.queue.borrow().is_empty() && pipe.senders.get() < IN_FLIGHT {
            pipe.senders.set(pipe.senders.get() + 1);
            actix_rt::spawn(send_batches(pipe.clone()));
        }
        exchange.await;
        return;
    }
}

/// Takes the next batch from the queue: up to [`MAX_BATCH`] requests and
/// [`BATCH_BYTES`] of bodies (at least one request), skipping those whose
/// client gave up.
fn next_batch(pipe: &Pipe) -> Vec<Pending> {
    let mut queue = pipe.queue.borrow_mut();
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(pending) = queue.front() {
        if pending.reply.is_closed() {
            queue.pop_front();
            continue;
        }
        let size = pending.request.body.len();
        if batch.len() == MAX_BATCH || (!batch.is_empty() && bytes + size > BATCH_BYTES) {
            break;
        }
        bytes += size;
        batch.extend(queue.pop_front());
    }
    batch
}

/// Sends one batch and hands each answer to its request as it comes.
async fn exchange(pipe: &Pipe, batch: Vec<Pending>) {
    let body = encode_batch(batch.iter().map(|p| &*p.request));
    let mut waiting: Vec<Option<Pending>> = batch.into_iter().map(Some).collect();
    let why = match read_answers(pipe, body, &mut waiting).await {
        Err(BatchFailure::NotTaken) => {
            for pending in waiting.into_iter().flatten() {
                actix_rt::spawn(relay_alone(pipe.to.clone(), pipe.deadline, pending));
            }
            return;
        }
        Err(BatchFailure::Failed(why)) => why,
        Ok(()) => format!(
            "{}: the batch's answer ended before this request's",
            pipe.to
        ),
    };
    for pending in waiting.into_iter().flatten() {
        let _ = pending.reply.send(Err(why.clone()));
    }
}

/// Posts a batch and hands each answer to its request as it arrives.
async fn read_answers(
    pipe: &Pipe,
    body: Vec<u8>,
    waiting: &mut [Option<Pending>],
) -> Result<(), BatchFailure> {
    let mut answers = Answers::default();
    let token = pipe.token.as_deref();
    transport::post_batch(&pipe.to, body, token, pipe.deadline, |piece| {
        answers.push(piece);
        while let Some((place, answer)) = answers.next_answer() {
            if let Some(pending) = waiting.get_mut(place as usize).and_then(Option::take) {
                let _ = pending.reply.send(Ok(answer));
            }
        }
    })
    .await?;
    if answers.is_partial() {
        let why = format!("{}: an answer was cut short", pipe.to);
        return Err(BatchFailure::Failed(why));
    }
    Ok(())
}

/// Relays a request on its own, to a member that does not take batches.
async fn relay_alone(to: SocketAddress, deadline: Duration, pending: Pending) {
    let request = &pending.request;
    let answer = transport::forward(
        &to,
        request.method.clone(),
        &request.path_and_query,
        &request.headers,
        request.body.clone(),
        deadline,
    )
    .await;
    let _ = pending.reply.send(answer);
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;
    use actix_web::web::Bytes;
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::replica::message::INTERNAL_PREFIX;
    use crate::sharding::batch_wire::{decode_batch, encode_answer};

    fn request(key: &str) -> Rc<Relayed> {
        Rc::new(Relayed {
            method: Method::GET,
            path_and_query: format!("/key-value-store/{key}"),
            table: None,
            key: key.to_string(),
            headers: vec![],
            body: Bytes::new(),
        })
    }

    fn answer(text: &str) -> Forwarded {
        Forwarded {
            status: 200,
            content_type: None,
            etag: None,
            body: Bytes::from(text.to_string()),
        }
    }

    /// How a fake member answers a batch.
    #[derive(Clone, Copy)]
    enum Member {
        /// Each request's key, in reverse order of the batch.
        Backwards,
        /// The first request's answer, then the stream stops.
        CutShort,
        /// No batch endpoint (an older version); keys served one by one.
        NoBatches,
        /// Each request's key as it is ready: keys starting `slow` after
        /// three seconds, the others at once.
        SlowKeys,
    }

    /// Starts a fake member on loopback; also gives the most requests it
    /// took in one batch.
    fn member(kind: Member) -> (SocketAddress, Arc<AtomicUsize>) {
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let batch = move |body: Bytes| {
            let requests = decode_batch(&body).unwrap();
            seen.fetch_max(requests.len(), Ordering::Relaxed);
            batch_answer(kind, requests)
        };
        async fn batch_answer(kind: Member, requests: Vec<Relayed>) -> HttpResponse {
            if let Member::SlowKeys = kind {
                let answers: futures_util::stream::FuturesUnordered<_> = (requests.into_iter())
                    .enumerate()
                    .map(|(i, r)| async move {
                        if r.key.starts_with("slow") {
                            actix_rt::time::sleep(Duration::from_secs(3)).await;
                        }
                        Ok::<_, std::io::Error>(encode_answer(i as u32, &answer(&r.key)))
                    })
                    .collect();
                return HttpResponse::Ok().streaming(answers);
            }
            let mut frames: Vec<Bytes> = (requests.iter().enumerate())
                .map(|(i, r)| encode_answer(i as u32, &answer(&r.key)))
                .collect();
            match kind {
                Member::Backwards => frames.reverse(),
                Member::CutShort => frames.truncate(1),
                Member::NoBatches => return HttpResponse::NotFound().finish(),
                Member::SlowKeys => unreachable!("answered above"),
            }
            let stream =
                futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
            HttpResponse::Ok().streaming(stream)
        }
        let one = |req: HttpRequest| async move {
            let key = req
                .path()
                .trim_start_matches("/key-value-store/")
                .to_string();
            HttpResponse::Ok().body(format!("alone {key}"))
        };
        let server = HttpServer::new(move || {
            App::new()
                .route(
                    &format!("{INTERNAL_PREFIX}/{BATCH_PATH}"),
                    web::post().to(batch.clone()),
                )
                .route("/key-value-store/{key}", web::get().to(one))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        actix_rt::spawn(server.run());
        (SocketAddress::parse(&addr.to_string()).unwrap(), largest)
    }

    /// Relays requests for `keys` at once; their answers' bodies.
    async fn relay_all(to: &SocketAddress, keys: &[&str]) -> Vec<Answer> {
        let deadline = Duration::from_secs(5);
        let all = keys.iter().map(|k| relay(to, request(k), None, deadline));
        futures_util::future::join_all(all).await
    }

    fn bodies(answers: Vec<Answer>) -> Vec<String> {
        answers
            .into_iter()
            .map(|a| String::from_utf8(a.unwrap().body.to_vec()).unwrap())
            .collect()
    }

    #[actix_web::test]
    async fn each_request_gets_its_own_answer_whatever_order_they_come_in() {
        let (to, largest) = member(Member::Backwards);
        let keys: Vec<String> = (0..150).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(bodies(relay_all(&to, &keys).await), keys);
        // Sent at once, most went in batches (of at most MAX_BATCH).
        assert!((2..=MAX_BATCH).contains(&largest.load(Ordering::Relaxed)));
        // Every batch ended: the pipe is idle again.
        let pipe = PIPES.with(|p| p.borrow()[&to].clone());
        assert_eq!((pipe.senders.get(), pipe.queue.borrow().len()), (0, 0));
    }

    #[actix_web::test]
    async fn requests_that_wait_at_the_member_hold_back_no_others() {
        let (to, _) = member(Member::SlowKeys);
        // Two slow batches: every place taken.
        let later = async {
            actix_rt::time::sleep(Duration::from_millis(30)).await;
            relay_all(&to, &["slow2", "slow3"]).await
        };
        let slow = futures_util::future::join(relay_all(&to, &["slow1"]), later);
        let fast = async {
            // Sent once the slow ones are under way.
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            let start = std::time::Instant::now();
            let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let got = bodies(relay_all(&to, &keys).await);
            assert_eq!(got, keys);
            start.elapsed()
        };
        let (slow, took) = futures_util::future::join(slow, fast).await;
        assert!(
            took < Duration::from_secs(2),
            "the quick requests took {took:?}"
        );
        assert_eq!(bodies(slow.0), ["slow1"]);
        assert_eq!(bodies(slow.1), ["slow2", "slow3"]);
    }

    #[actix_web::test]
    async fn a_member_without_batches_is_sent_each_request_alone() {
        let (to, _) = member(Member::NoBatches);
        let got = bodies(relay_all(&to, &["a", "b", "c"]).await);
        assert_eq!(got, ["alone a", "alone b", "alone c"]);
    }

    #[actix_web::test]
    async fn requests_whose_answers_never_came_fail_and_the_others_do_not() {
        let (to, _) = member(Member::CutShort);
        let answers = relay_all(&to, &["a", "b", "c", "d"]).await;
        // The first request goes alone (nothing is under way), so it is
        // answered; of each later batch only the first is.
        assert_eq!(
            answers[0].as_ref().map(|a| a.body.clone()).ok(),
            Some(Bytes::from("a"))
        );
        let failed = answers.iter().filter(|a| a.is_err()).count();
        assert!(failed >= 1, "{answers:?}");
        for answer in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert!(answer.contains("ended before"), "{answer}");
        }
    }

    #[actix_web::test]
    async fn a_member_that_cannot_be_reached_fails_every_request() {
        let to = SocketAddress::parse("127.0.0.1:1").unwrap();
        let answers = relay_all(&to, &["a", "b", "c"]).await;
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
    }
}
