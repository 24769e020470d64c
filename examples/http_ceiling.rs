//! The HTTP ceiling of the benchmark (`bench/run.py`): a minimal actix-web
//! server with the routes of causalkv (`PUT`, `GET` and `DELETE`
//! `/key-value-store/{key}`) that answers a fixed JSON body of the same
//! shape and size as causalkv's answers, without storing anything. No HTTP
//! store built on actix-web can beat it on the same machine with the same
//! worker count.
//!
//! ```sh
//! cargo run --release --example http_ceiling -- --workers 2 --port 9000
//! ```

use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer};

/// A GET answer the size of causalkv's for a 100-byte value and a context
/// naming three replicas.
const GET_BODY: &str = concat!(
    r#"{"message":"Retrieved successfully","causal-metadata":{"127.0.0.1:8082#5d1c0e9a":1,"#,
    r#""127.0.0.1:8083#a03f17c2":1,"127.0.0.1:8084#77e1b2d4":1},"value":""#,
    "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv",
    r#""}"#
);

/// A PUT answer the size of causalkv's.
const PUT_BODY: &str = concat!(
    r#"{"causal-metadata":{"127.0.0.1:8082#5d1c0e9a":1,"127.0.0.1:8083#a03f17c2":1,"#,
    r#""127.0.0.1:8084#77e1b2d4":1},"message":"Updated successfully"}"#
);

/// A DELETE answer the size of causalkv's.
const DELETE_BODY: &str = concat!(
    r#"{"causal-metadata":{"127.0.0.1:8082#5d1c0e9a":1,"127.0.0.1:8083#a03f17c2":1,"#,
    r#""127.0.0.1:8084#77e1b2d4":1},"message":"Deleted successfully"}"#
);

fn json(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

// Every handler reads the request body, as a store must.
async fn get(_key: web::Path<String>, _body: web::Bytes) -> HttpResponse {
    json(GET_BODY)
}

async fn put(_key: web::Path<String>, _body: web::Bytes) -> HttpResponse {
    json(PUT_BODY)
}

async fn delete(_key: web::Path<String>, _body: web::Bytes) -> HttpResponse {
    json(DELETE_BODY)
}

const USAGE: &str = "usage: http_ceiling [--workers N] [--port P] [--host H]";

fn parse_args() -> Result<(usize, u16, String), String> {
    let mut workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut port: u16 = 9000;
    let mut host = "127.0.0.1".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--workers" => {
                workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
                if workers == 0 {
                    return Err("--workers must be at least 1".into());
                }
            }
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--host" => host = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((workers, port, host))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let (workers, port, host) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("http_ceiling: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let server = HttpServer::new(|| {
        App::new()
            .route("/key-value-store/{key:.*}", web::get().to(get))
            .route("/key-value-store/{key:.*}", web::put().to(put))
            .route("/key-value-store/{key:.*}", web::delete().to(delete))
    })
    .workers(workers)
    .bind((host.as_str(), port))?;
    eprintln!("http_ceiling listening on {host}:{port} with {workers} workers");
    server.run().await
}
