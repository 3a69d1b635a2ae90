//! A small CloudStack API client that signs requests as `cs` does (signature version 3 with
//! `expires`), for tests and the benchmark harness.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// The answer is not CloudStack's JSON.
    #[error("unexpected answer (status {status}): {body}")]
    Shape {
        /// HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// The API answered with an error.
    #[error("API error {code}: {text}")]
    Api {
        /// `errorcode`.
        code: u16,
        /// `errortext`.
        text: String,
        /// The whole error object.
        body: Value,
    },
    /// A job did not end in time.
    #[error("job {0} still pending after the deadline")]
    Timeout(String),
    /// A job failed.
    #[error("job {jobid} failed: {result}")]
    JobFailed {
        /// The job.
        jobid: String,
        /// Its `jobresult`.
        result: Value,
    },
}

/// A signed client for one user.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    api_key: String,
    secret: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// How long an idle connection is kept for the next request: well below the server's header
/// timeout, after which the server closes it (a client whose runtime sleeps between calls
/// would not notice the close and would send on a dead connection).
const POOL_IDLE: Duration = Duration::from_secs(5);

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn expires_in(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let t = time::OffsetDateTime::from_unix_timestamp(now + secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000");
    t.format(&f).unwrap_or_default()
}

impl Client {
    /// A client for `endpoint` (`http://host:port/client/api`).
    pub fn new(endpoint: &str, api_key: &str, secret: &str) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client {
            endpoint: endpoint.to_string(),
            api_key: api_key.to_string(),
            secret: secret.to_string(),
            http: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(TokioTimer::new())
                .build(connector),
        }
    }

    /// The signed query string of a command.
    pub fn query(&self, command: &str, params: &[(&str, &str)]) -> String {
        let mut all: Vec<(String, String)> = vec![
            ("command".into(), command.into()),
            ("apiKey".into(), self.api_key.clone()),
            ("response".into(), "json".into()),
            ("signatureVersion".into(), "3".into()),
            ("expires".into(), expires_in(600)),
        ];
        all.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let signature = api_types::signing::sign(&all, &self.secret);
        all.push(("signature".into(), signature));
        all.iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Sends a command; returns the HTTP status and the body as received, unparsed.
    ///
    /// # Errors
    /// [`ClientError::Http`].
    pub async fn call_raw(
        &self,
        command: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, Bytes), ClientError> {
        let uri = format!("{}?{}", self.endpoint, self.query(command, params));
        let req = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends a command; returns the object inside the envelope.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call(&self, command: &str, params: &[(&str, &str)]) -> Result<Value, ClientError> {
        let (status, body) = self.call_raw(command, params).await?;
        let shape = || ClientError::Shape {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let inner = match serde_json::from_slice::<Value>(&body).map_err(|_| shape())? {
            Value::Object(o) if o.len() == 1 => o.into_iter().next().map(|(_, v)| v),
            _ => None,
        }
        .ok_or_else(shape)?;
        if status != 200 {
            return Err(ClientError::Api {
                code: inner["errorcode"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(status),
                text: inner["errortext"].as_str().unwrap_or_default().to_string(),
                body: inner,
            });
        }
        Ok(inner)
    }

    /// Polls a job every `every` until it ends or `deadline` passes; returns its `jobresult`.
    ///
    /// # Errors
    /// [`ClientError::JobFailed`], [`ClientError::Timeout`] or the call's error.
    pub async fn wait_job(
        &self,
        jobid: &str,
        every: Duration,
        deadline: Instant,
    ) -> Result<Value, ClientError> {
        loop {
            let r = self
                .call("queryAsyncJobResult", &[("jobid", jobid)])
                .await?;
            match r["jobstatus"].as_i64() {
                Some(1) => return Ok(r["jobresult"].clone()),
                Some(2) => {
                    return Err(ClientError::JobFailed {
                        jobid: jobid.to_string(),
                        result: r["jobresult"].clone(),
                    })
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout(jobid.to_string()));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Sends an async command and waits for its job (polling every 10 ms, up to 60 s).
    ///
    /// # Errors
    /// As [`Client::call`] and [`Client::wait_job`].
    pub async fn run(&self, command: &str, params: &[(&str, &str)]) -> Result<Value, ClientError> {
        let r = self.call(command, params).await?;
        let jobid = r["jobid"]
            .as_str()
            .ok_or_else(|| ClientError::Shape {
                status: 200,
                body: r.to_string(),
            })?
            .to_string();
        self.wait_job(
            &jobid,
            Duration::from_millis(10),
            Instant::now() + Duration::from_secs(60),
        )
        .await
    }
}
