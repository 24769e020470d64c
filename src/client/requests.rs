//! The [`Client`]: the causal context it carries, the hosts it tries in
//! turn, and the requests for keys and tables, each carrying the context
//! and taking the answer's.

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

use super::context::merge_contexts;
use super::precondition::{quote_etag, Precondition};
use super::response::{concern_not_met, ClientError, Response};
use super::wire::{encode_key, http_client, raw_with_headers};

/// Default time allowed for one request (a replica waits up to 10 s for
/// causal dependencies before answering 503).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A causal-context-carrying client over a list of hosts.
pub struct Client {
    pub(super) http: awc::Client,
    pub(super) timeout: Duration,
    pub(super) hosts: Vec<String>,
    context: Value,
    /// The write concern sent with writes (`w`), if not the default.
    write_concern: Option<String>,
    /// The table whose keys the key requests name (`None`: the default).
    table: Option<String>,
}

impl Client {
    /// A client for `hosts` (`ip:port` each), tried in order.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self::with_timeout(hosts, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`], with a per-request timeout.
    pub fn with_timeout<S: Into<String>>(
        hosts: impl IntoIterator<Item = S>,
        timeout: Duration,
    ) -> Self {
        Client {
            http: http_client(timeout),
            timeout,
            hosts: hosts.into_iter().map(Into::into).collect(),
            context: Value::String(String::new()),
            write_concern: None,
            table: None,
        }
    }

    /// Asks every later write to be acknowledged only once `concern`
    /// replicas hold it (`1`, a number, `majority` or `all`; see the
    /// README); `None` for the default (the replica that takes it).
    pub fn set_write_concern(&mut self, concern: Option<String>) {
        self.write_concern = concern.filter(|c| c.trim() != "1");
    }

    /// Sends the key requests ([`Client::put`], [`Client::get`], ...) to
    /// the keys of table `name` (`/tables/<name>/key-value-store/<key>`);
    /// `None`: the default table (`/key-value-store/<key>`).
    pub fn set_table(&mut self, name: Option<String>) {
        self.table = name;
    }

    /// The table the key requests name (`None`: the default table).
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The hosts, in the order they are tried.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The causal context the next request will carry.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// Replaces the causal context (e.g. one loaded from a session file).
    pub fn set_context(&mut self, context: Value) {
        self.context = context;
    }

    /// Merges `other` into the context, so that the next request is also
    /// ordered after the writes `other` names (e.g. those of another
    /// process sharing a session). Fails, changing nothing, if either
    /// context is malformed.
    pub fn merge_context(&mut self, other: &Value) -> Result<(), String> {
        self.context = merge_contexts(&self.context, other)?;
        Ok(())
    }

    /// Puts `value` at `key`: 201 if it was absent, 200 if it existed,
    /// with the new version's entity tag ([`Response::etag`]).
    pub async fn put(&mut self, key: &str, value: Value) -> Result<Response, ClientError> {
        let body = json!({"value": value, "causal-metadata": self.context});
        self.causal(Method::PUT, key, body, true, None).await
    }

    /// Puts `value` at `key` if `condition` holds (as [`Client::put`]);
    /// else 412, nothing written, naming the key's current version
    /// ([`Response::etag`], `None` if it holds no value). The 412's
    /// context is kept.
    ///
    /// A request that timed out may have been made: sent again to the
    /// next host, it can fail its condition against its own write.
    pub async fn put_if(
        &mut self,
        key: &str,
        value: Value,
        condition: &Precondition,
    ) -> Result<Response, ClientError> {
        let body = json!({"value": value, "causal-metadata": self.context});
        self.causal(Method::PUT, key, body, true, Some(condition))
            .await
    }

    /// Gets `key`; a 200 carries the version's entity tag
    /// ([`Response::etag`]).
    pub async fn get(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::GET, key, body, false, None).await
    }

    /// Gets `key` unless its current version has the entity tag `etag`
    /// (`If-None-Match`; quoted if given bare, see [`quote_etag`]): then
    /// the answer is 304, with the tag but no body, and the context is
    /// unchanged.
    pub async fn get_if_none_match(
        &mut self,
        key: &str,
        etag: &str,
    ) -> Result<Response, ClientError> {
        let etag = quote_etag(etag).map_err(ClientError::Invalid)?;
        let body = json!({"causal-metadata": self.context});
        let path = self.key_path(key);
        let headers = [("if-none-match", etag.as_str())];
        let response = self
            .send_with(&self.http, Method::GET, &path, Some(body), &headers)
            .await?;
        self.adopt(&response);
        Ok(response)
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::DELETE, key, body, true, None).await
    }

    /// Deletes `key` if `condition` holds (as [`Client::delete`]); else
    /// 412, as [`Client::put_if`].
    pub async fn delete_if(
        &mut self,
        key: &str,
        condition: &Precondition,
    ) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.causal(Method::DELETE, key, body, true, Some(condition))
            .await
    }

    /// Creates table `name` (`PUT /tables/<name>`), keeping concurrent
    /// writes as siblings if `siblings`: 201 if it was created, 200 if it
    /// existed (its settings unchanged), with the table in `"table"`.
    pub async fn create_table(
        &mut self,
        name: &str,
        siblings: bool,
    ) -> Result<Response, ClientError> {
        let body = json!({"siblings": siblings, "causal-metadata": self.context});
        self.table_request(Method::PUT, &table_path(name), body)
            .await
    }

    /// Every table but the default one (`GET /tables`): 200 with
    /// `"tables": [{"name", "siblings", "keys"}, ...]`, sorted by name.
    pub async fn list_tables(&mut self) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.table_request(Method::GET, "/tables", body).await
    }

    /// Drops table `name` and its keys (`DELETE /tables/<name>`): 200, or
    /// 404 if there is no such table.
    pub async fn drop_table(&mut self, name: &str) -> Result<Response, ClientError> {
        let body = json!({"causal-metadata": self.context});
        self.table_request(Method::DELETE, &table_path(name), body)
            .await
    }

    async fn table_request(
        &mut self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Response, ClientError> {
        let response = self.send(method, path, Some(body)).await?;
        self.adopt(&response);
        Ok(response)
    }

    async fn causal(
        &mut self,
        method: Method,
        key: &str,
        body: Value,
        write: bool,
        condition: Option<&Precondition>,
    ) -> Result<Response, ClientError> {
        let mut path = self.key_path(key);
        if let Some(w) = self.write_concern.as_ref().filter(|_| write) {
            path.push_str("?w=");
            path.push_str(&encode_key(w));
        }
        let headers: Vec<(&str, &str)> = condition.map(Precondition::header).into_iter().collect();
        let response = self
            .send_with(&self.http, method, &path, Some(body), &headers)
            .await?;
        self.adopt(&response);
        Ok(response)
    }

    /// The path of `key` in the table the key requests name.
    fn key_path(&self, key: &str) -> String {
        match &self.table {
            Some(table) => format!("{}/key-value-store/{}", table_path(table), encode_key(key)),
            None => format!("/key-value-store/{}", encode_key(key)),
        }
    }

    /// Takes the context of `response` (a 412's too), unless it is a 503
    /// for a write that was not made.
    fn adopt(&mut self, response: &Response) {
        if let Some(metadata) = response.metadata() {
            // A write short of its concern was made all the same.
            if response.status != 503 || concern_not_met(response) {
                self.context = metadata.clone();
            }
        }
    }

    /// Sends a request to the first host that answers with anything but
    /// 503; if every host fails, the last 503 is returned, else an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response, ClientError> {
        self.send_with(&self.http, method, path, body, &[]).await
    }

    /// [`Client::send`] through `http`, with `headers` added.
    pub(super) async fn send_with(
        &self,
        http: &awc::Client,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        if self.hosts.is_empty() {
            return Err(ClientError::NoHosts);
        }
        let mut failures = Vec::new();
        let mut unavailable = None;
        for host in &self.hosts {
            let sent = raw_with_headers(http, host, method.clone(), path, body.as_ref(), headers);
            match sent.await {
                Ok(response) if response.status == 503 && !concern_not_met(&response) => {
                    unavailable = Some(response)
                }
                Ok(response) => return Ok(response),
                Err(e) => failures.push(format!("{host}: {e}")),
            }
        }
        unavailable.ok_or_else(|| ClientError::Unreachable(failures.join("; ")))
    }
}

/// The path of table `name`.
fn table_path(name: &str) -> String {
    format!("/tables/{}", encode_key(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merging_into_a_client_keeps_what_it_knew() {
        let mut client = Client::new(["127.0.0.1:1"]);
        client.set_context(json!({"r1#a": 2}));
        client
            .merge_context(&json!({"r1#a": 1, "r2#b": 5}))
            .unwrap();
        assert_eq!(client.context(), &json!({"r1#a": 2, "r2#b": 5}));
        assert!(client.merge_context(&json!([1])).is_err());
        assert_eq!(client.context(), &json!({"r1#a": 2, "r2#b": 5}));
    }

    #[test]
    fn key_requests_name_the_table_set() {
        let mut client = Client::new(["127.0.0.1:1"]);
        assert_eq!(client.key_path("a b"), "/key-value-store/a%20b");
        client.set_table(Some("orders_2024".into()));
        assert_eq!(client.table(), Some("orders_2024"));
        assert_eq!(
            client.key_path("a/b"),
            "/tables/orders_2024/key-value-store/a%2Fb"
        );
        client.set_table(None);
        assert_eq!(client.key_path("k"), "/key-value-store/k");
        assert_eq!(table_path("t-1"), "/tables/t-1");
    }
}
