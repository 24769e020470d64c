//! Waiting, by polling with a deadline, until the replicas of a test
//! cluster agree on something.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{TestCluster, DEADLINE, POLL};

/// Polls `check` every [`POLL`] until it returns `Ok`, and returns that;
/// panics after `timeout` with `what` and the last `Err` it returned.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() > timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
            }
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// Polls `check` every [`POLL`] until it returns `true`; panics after
/// `timeout` naming `what`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = check();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("condition false".to_string())
            }
        }
    })
    .await
}

/// Runs `f` and returns its output and how long it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

impl TestCluster {
    /// Waits until `check` accepts `/health` of every replica of `at`
    /// (`Err` says why not); `what` names the wait in a failure.
    pub async fn wait_health<F>(&self, at: &[usize], what: &str, timeout: Duration, check: F)
    where
        F: Fn(usize, &Value) -> Result<(), String>,
    {
        let check = &check;
        wait_for(timeout, &format!("{what} at {at:?}"), || async move {
            for &i in at {
                let health = self.try_health(i).await?;
                check(i, &health).map_err(|e| format!("replica {i}: {e}; health {health}"))?;
            }
            Ok(())
        })
        .await
    }

    /// Waits until every replica of `at` answers `/ready` with 200.
    pub async fn wait_ready(&self, at: &[usize]) {
        wait_for(DEADLINE, &format!("/ready 200 at {at:?}"), || async move {
            for &i in at {
                let r = self.try_ready(i).await?;
                if r.status != 200 || r.body["ready"] != json!(true) {
                    return Err(format!("replica {i}: /ready {} {}", r.status, r.text));
                }
            }
            Ok(())
        })
        .await
    }

    /// Waits until every replica of `at` prints `expected` as its view.
    pub async fn wait_views(&self, at: &[usize], expected: &str) {
        self.wait_views_within(at, expected, DEADLINE).await
    }

    /// Waits up to `timeout` until every replica of `at` prints `expected`
    /// as its view.
    pub async fn wait_views_within(&self, at: &[usize], expected: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("views at {at:?} to be {expected}"),
            || async move {
                let mut seen = Vec::new();
                for &i in at {
                    seen.push(self.try_view(i).await.unwrap_or_else(|e| format!("<{e}>")));
                }
                if seen.iter().all(|v| v == expected) {
                    Ok(())
                } else {
                    Err(format!("views: {seen:?}"))
                }
            },
        )
        .await
    }

    /// Waits until, at every replica of `at`, a GET of each key without
    /// context answers as `expected` says: `Some(v)` for 200 with value `v`,
    /// `None` for 404.
    pub async fn wait_contents(&self, at: &[usize], expected: &[(String, Option<Value>)]) {
        wait_for(DEADLINE, &format!("contents at {at:?}"), || async move {
            for &i in at {
                for (key, want) in expected {
                    let r = self.try_get(i, key).await?;
                    let ok = match want {
                        Some(v) => r.status == 200 && r.body.get("value") == Some(v),
                        None => r.status == 404,
                    };
                    if !ok {
                        return Err(format!(
                            "replica {i} key {key:?}: want {want:?}, got {} {}",
                            r.status, r.text
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}
