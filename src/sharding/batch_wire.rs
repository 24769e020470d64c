//! How client requests relayed in a batch, and their answers, are laid
//! out on the wire ([`super::batch`]).
//!
//! A batch is one `POST` whose body is the requests one after the other;
//! the answer streams one frame per request as each is ready, in no
//! particular order, each naming the request's place in the batch. Every
//! number is little-endian; a text or a body is its length (`u32`) and
//! its bytes.
//!
//! | frame | fields |
//! | --- | --- |
//! | request | method (`u8`: 0 GET, 1 PUT, 2 DELETE), path and query, table (empty: the default table), key, headers (`u16` count, then name and value of each), body |
//! | answer | place in the batch (`u32`), status (`u16`), content type (empty: none), entity tag (empty: none), body |

use actix_web::http::Method;
use actix_web::web::{Bytes, BytesMut};

use crate::transport::Forwarded;

/// Most requests one batch may hold.
pub const MAX_BATCH: usize = 64;

/// A client request relayed in a batch: what the member that serves it
/// needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub method: Method,
    /// The path and query the client sent (the query carries a write
    /// concern or a context).
    pub path_and_query: String,
    /// The key's table, by name (`None`: the default table).
    pub table: Option<String>,
    pub key: String,
    /// The headers a relay keeps (see `http::kv`).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The body of a batch of `requests`.
pub fn encode_batch<'a>(requests: impl IntoIterator<Item = &'a Relayed>) -> Vec<u8> {
    let mut out = Vec::new();
    for request in requests {
        let method = match request.method {
            Method::PUT => 1u8,
            Method::DELETE => 2,
            _ => 0,
        };
        out.push(method);
        put_bytes(&mut out, request.path_and_query.as_bytes());
        put_bytes(&mut out, request.table.as_deref().unwrap_or("").as_bytes());
        put_bytes(&mut out, request.key.as_bytes());
        out.extend_from_slice(&(request.headers.len() as u16).to_le_bytes());
        for (name, value) in &request.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_bytes(&mut out, &request.body);
    }
    out
}

/// Reads fields from the front of a buffer.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("the batch ends inside a request".into());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("two bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("a relayed {what} is not UTF-8"))
    }
}

/// The requests of a batch's body.
pub fn decode_batch(body: &Bytes) -> Result<Vec<Relayed>, String> {
    let mut reader = Reader { rest: body };
    let mut requests = Vec::new();
    while !reader.rest.is_empty() {
        if requests.len() == MAX_BATCH {
            return Err(format!("a batch holds at most {MAX_BATCH} requests"));
        }
        let method = match reader.u8()? {
            0 => Method::GET,
            1 => Method::PUT,
            2 => Method::DELETE,
            other => return Err(format!("no method is numbered {other}")),
        };
        let path_and_query = reader.text("path")?;
        let table = Some(reader.text("table name")?).filter(|t| !t.is_empty());
        let key = reader.text("key")?;
        let count = reader.u16()?;
        let mut headers = Vec::with_capacity(usize::from(count).min(16));
        for _ in 0..count {
            headers.push((reader.text("header name")?, reader.text("header")?));
        }
        let bytes = reader.bytes()?;
        // The request's body is a slice of the batch's, not a copy.
        let start = bytes.as_ptr() as usize - body.as_ptr() as usize;
        let body = body.slice(start..start + bytes.len());
        requests.push(Relayed {
            method,
            path_and_query,
            table,
            key,
            headers,
            body,
        });
    }
    Ok(requests)
}

/// The frame answering the request at `place` in its batch.
pub fn encode_answer(place: u32, answer: &Forwarded) -> Bytes {
    let mut out = Vec::with_capacity(answer.body.len() + 64);
    out.extend_from_slice(&place.to_le_bytes());
    out.extend_from_slice(&answer.status.to_le_bytes());
    put_bytes(
        &mut out,
        answer.content_type.as_deref().unwrap_or("").as_bytes(),
    );
    put_bytes(&mut out, answer.etag.as_deref().unwrap_or("").as_bytes());
    put_bytes(&mut out, &answer.body);
    out.into()
}

/// Reads answer frames as their bytes arrive, in pieces of any size.
#[derive(Default)]
pub struct Answers {
    buffer: BytesMut,
}

impl Answers {
    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether bytes of a frame not yet whole are held.
    pub fn is_partial(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The next whole frame: its place in the batch and the answer;
    /// `None` until one has arrived whole.
    pub fn next_answer(&mut self) -> Option<(u32, Forwarded)> {
        let mut reader = Reader { rest: &self.buffer };
        let frame = (|| {
            let place = reader.u32()?;
            let status = reader.u16()?;
            let text = |bytes: &[u8]| {
                (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
            };
            let content_type = text(reader.bytes()?);
            let etag = text(reader.bytes()?);
            let body = Bytes::copy_from_slice(reader.bytes()?);
            Ok::<_, String>((
                place,
                Forwarded {
                    status,
                    content_type,
                    etag,
                    body,
                },
            ))
        })();
        let used = self.buffer.len() - reader.rest.len();
        match frame {
            // Not whole yet: wait for more.
            Err(_) => None,
            Ok(frame) => {
                let _ = self.buffer.split_to(used);
                Some(frame)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, table: Option<&str>, key: &str, body: &str) -> Relayed {
        Relayed {
            method,
            path_and_query: format!("/key-value-store/{key}?w=all"),
            table: table.map(str::to_string),
            key: key.to_string(),
            headers: vec![
                ("x-causal-metadata".into(), "{\"a\":1}".into()),
                ("if-match".into(), "*".into()),
            ],
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn a_batch_reads_back_as_it_was_written() {
        let batch = vec![
            request(Method::PUT, None, "k", "{\"value\":1}"),
            request(Method::GET, Some("t"), "é/x", ""),
            request(Method::DELETE, None, "k2", "{}"),
        ];
        let body = Bytes::from(encode_batch(&batch));
        assert_eq!(decode_batch(&body).unwrap(), batch);
        assert_eq!(decode_batch(&Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_batch_is_refused() {
        let batch = [request(Method::PUT, None, "k", "{\"value\":1}")];
        let body = encode_batch(&batch);
        for cut in 1..body.len() {
            let short = Bytes::copy_from_slice(&body[..cut]);
            assert!(decode_batch(&short).is_err(), "cut at {cut}");
        }
        let mut bad = body.clone();
        bad[0] = 7;
        assert!(decode_batch(&Bytes::from(bad)).is_err());
        let many: Vec<_> = (0..=MAX_BATCH).map(|_| batch[0].clone()).collect();
        assert!(decode_batch(&Bytes::from(encode_batch(&many))).is_err());
    }

    #[test]
    fn answers_are_read_whatever_pieces_they_arrive_in() {
        let answers = [
            Forwarded {
                status: 200,
                content_type: Some("application/json".into()),
                etag: Some("\"x\"".into()),
                body: Bytes::from_static(b"{\"message\":\"ok\"}"),
            },
            Forwarded {
                status: 503,
                content_type: None,
                etag: None,
                body: Bytes::new(),
            },
        ];
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode_answer(1, &answers[0]));
        wire.extend_from_slice(&encode_answer(0, &answers[1]));
        for piece in 1..wire.len() {
            let mut reader = Answers::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(piece) {
                reader.push(chunk);
                while let Some(frame) = reader.next_answer() {
                    got.push(frame);
                }
            }
            assert!(!reader.is_partial());
            let got: Vec<_> = got
                .into_iter()
                .map(|(i, a)| (i, a.status, a.content_type, a.etag, a.body))
                .collect();
            assert_eq!(got.len(), 2, "pieces of {piece}");
            assert_eq!(got[0].0, 1);
            assert_eq!(got[0].1, 200);
            assert_eq!(got[0].3.as_deref(), Some("\"x\""));
            assert_eq!(got[1], (0, 503, None, None, Bytes::new()));
        }
    }
}
