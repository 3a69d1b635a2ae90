-- Management servers sharing the database: one row per server process, alive while its
-- heartbeat is recent.
CREATE TABLE servers (
    id {pk},
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    started BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL
);

-- Hosts that run routers, each driven by one agent. The server holding the agent's
-- connection owns the host's routers. Every change of owner or connection bumps the epoch,
-- which fences writes of a server that lost the host.
CREATE TABLE hosts (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    driver TEXT,
    server_id BIGINT,
    epoch BIGINT NOT NULL,
    connected BIGINT NOT NULL,
    seen BIGINT,
    created BIGINT NOT NULL
);

-- Tokens agents authenticate with, stored as SHA-256 digests.
CREATE TABLE agent_tokens (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    host_id BIGINT NOT NULL REFERENCES hosts(id),
    digest TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL,
    revoked BIGINT,
    last_used BIGINT
);

-- Facts the servers of one database share (the secret they ask each other with).
CREATE TABLE cluster_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Routers made before hosts existed ran on the server's own, in-process agent.
UPDATE routers SET host = 'local';
CREATE INDEX routers_host ON routers(host);
