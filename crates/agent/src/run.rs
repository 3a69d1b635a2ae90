//! `guestnet agent`: the agent as its own process.
//!
//! It connects out to a management server (the first of `--server` that answers; the next one
//! when a connection drops), presents its token, and answers the server's requests until the
//! connection ends; then it connects again, backing off from 100 ms to 5 s while no server takes
//! it. A connection on which nothing arrived for [`SILENCE_LIMIT`] is dropped (the server pings
//! every second), so a cut link is noticed within seconds on both sides. The agent holds at
//! most one connection: a server only reaches a host's routers through the connection the host
//! opened last. Meanwhile a drift timer repairs every router whose kernel lost what it
//! committed, from the router's own ledger.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::proto::{AgentMsg, ServerMsg, AGENT_PATH, SILENCE_LIMIT};
use crate::Agent;

/// How the agent process runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The management servers, `http://host:port` (tried in turn).
    pub servers: Vec<String>,
    /// The token a server issued for this host.
    pub token: String,
    /// How often the drift timer looks at every router.
    pub drift_interval: Duration,
}

/// Why a connection attempt or a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server did not take the token.
    #[error("{server} refused the agent's token ({status}): it is unknown or revoked")]
    Refused {
        /// The server.
        server: String,
        /// The HTTP status it answered.
        status: u16,
    },
    /// The server could not be reached or the WebSocket failed.
    #[error("{server}: {source}")]
    Transport {
        /// The server.
        server: String,
        /// Why.
        #[source]
        source: tungstenite::Error,
    },
    /// Connecting took too long.
    #[error("{server}: no answer within {secs} s")]
    ConnectTimeout {
        /// The server.
        server: String,
        /// The limit.
        secs: u64,
    },
    /// Nothing arrived for too long.
    #[error("{server}: silent for {} s; dropping the connection", SILENCE_LIMIT.as_secs())]
    Silent {
        /// The server.
        server: String,
    },
    /// The server closed the connection.
    #[error("{server} closed the connection")]
    Closed {
        /// The server.
        server: String,
    },
    /// The server sent something that is not a message of the protocol.
    #[error("{server} sent a message the agent does not understand: {detail}")]
    Protocol {
        /// The server.
        server: String,
        /// What was wrong.
        detail: String,
    },
}

/// The WebSocket URL of a server given as `http://host:port` (or already `ws://…`).
pub fn socket_url(server: &str) -> String {
    let base = server.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        format!("ws://{base}")
    };
    format!("{base}{AGENT_PATH}")
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the agent until `shutdown` completes.
pub async fn run(opts: Options, agent: Agent, shutdown: impl Future<Output = ()>) {
    let drift = tokio::spawn(drift_timer(agent.clone(), opts.drift_interval));
    let sessions = async {
        let mut backoff = FIRST_BACKOFF;
        let mut next = 0usize;
        loop {
            let Some(server) = opts.servers.get(next % opts.servers.len().max(1)).cloned() else {
                tracing::error!("no management server to connect to");
                return;
            };
            next += 1;
            let started = Instant::now();
            match session(&server, &opts.token, &agent).await {
                Ok(()) => {}
                Err(e @ SessionError::Refused { .. }) => tracing::error!(error = %e, "refused"),
                Err(e) => tracing::warn!(error = %e, "connection to the management server ended"),
            }
            // A session that lasted was a good one: start backing off again from the bottom.
            if started.elapsed() > Duration::from_secs(10) {
                backoff = FIRST_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    };
    tokio::select! {
        () = sessions => {}
        () = shutdown => tracing::info!("agent stopping"),
    }
    drift.abort();
}

/// Opens every router of the host, then, every `every`, gives each router whose kernel lost
/// what it committed its last good config back (see [`crate::driver::Driver::tend`]). Runs
/// until dropped.
pub async fn drift_timer(agent: Agent, every: Duration) {
    agent.driver().open_all().await;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (router, generation) in agent.driver().tend().await {
            tracing::info!(%router, generation,
                "the router's kernel had lost its rules; enforced again from its ledger");
        }
    }
}

/// One connection to one server, until it ends.
///
/// # Errors
/// Why it ended.
pub async fn session(server: &str, token: &str, agent: &Agent) -> Result<(), SessionError> {
    let url = socket_url(server);
    let transport = |source| SessionError::Transport {
        server: server.to_string(),
        source,
    };
    let mut request = url.as_str().into_client_request().map_err(transport)?;
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        SessionError::Protocol {
            server: server.to_string(),
            detail: "the token holds characters a header cannot carry".into(),
        }
    })?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, bearer);
    request.headers_mut().insert(
        crate::proto::DRIVER_HEADER,
        http::HeaderValue::from_static(agent.driver().kind().name()),
    );
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(1 << 30))
        .max_frame_size(Some(1 << 30));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| SessionError::ConnectTimeout {
            server: server.to_string(),
            secs: CONNECT_TIMEOUT.as_secs(),
        })?;
    let (ws, _) = match connected {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(response)) => {
            return Err(SessionError::Refused {
                server: server.to_string(),
                status: response.status().as_u16(),
            })
        }
        Err(e) => return Err(transport(e)),
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let result = async {
        loop {
            let next = tokio::time::timeout(SILENCE_LIMIT, stream.next())
                .await
                .map_err(|_| SessionError::Silent {
                    server: server.to_string(),
                })?;
            let msg = match next {
                None => {
                    return Err(SessionError::Closed {
                        server: server.to_string(),
                    })
                }
                Some(Err(e)) => return Err(transport(e)),
                Some(Ok(m)) => m,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Ping(data) => {
                    let _ = out_tx.send(Message::Pong(data));
                    continue;
                }
                Message::Close(_) => {
                    return Err(SessionError::Closed {
                        server: server.to_string(),
                    })
                }
                Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => continue,
            };
            let msg: ServerMsg =
                serde_json::from_str(text.as_str()).map_err(|e| SessionError::Protocol {
                    server: server.to_string(),
                    detail: e.to_string(),
                })?;
            match msg {
                ServerMsg::Welcome { host, server: name } => {
                    tracing::info!(%host, server = %name, url = %server, "connected to the management server");
                }
                ServerMsg::Request { id, op } => {
                    let agent = agent.clone();
                    let out = out_tx.clone();
                    tokio::spawn(async move {
                        let what = op.name();
                        let subject = op.subject().to_string();
                        let t = Instant::now();
                        let result = agent.handle(op).await;
                        tracing::debug!(what, %subject, us = t.elapsed().as_micros() as u64,
                            ok = result.is_ok(), "request done");
                        let reply = AgentMsg::Reply { id, result };
                        match serde_json::to_string(&reply) {
                            Ok(text) => {
                                let _ = out.send(Message::text(text));
                            }
                            Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
                        }
                    });
                }
            }
        }
    }
    .await;
    drop(out_tx);
    writer.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::socket_url;

    #[test]
    fn server_addresses_become_socket_urls() {
        assert_eq!(
            socket_url("http://198.51.100.2:8080"),
            "ws://198.51.100.2:8080/agent/v1"
        );
        assert_eq!(socket_url("http://a:1/"), "ws://a:1/agent/v1");
        assert_eq!(socket_url("a:1"), "ws://a:1/agent/v1");
        assert_eq!(socket_url("wss://a:1"), "wss://a:1/agent/v1");
    }
}
