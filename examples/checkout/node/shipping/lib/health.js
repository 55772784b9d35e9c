'use strict';
/**
 * One small HTTP endpoint, like the Python processes' (messaging/health.py), on
 * `BATON_METRICS__HOST:BATON_METRICS__PORT` when the port is set: `GET /healthz` (200 while
 * consuming with RabbitMQ and Redis connected, else 503, a JSON body naming each check),
 * `GET /livez` (200 while the event loop answers) and `GET /metrics` (Prometheus text:
 * `baton_participant_messages_total{participant,kind,outcome}` as the SDK names it).
 */
const http = require('node:http');

class Metrics {
  constructor(participant, kinds) {
    this.participant = participant;
    this.kinds = new Set(kinds);
    this.counts = new Map();
    for (const kind of kinds) this.counts.set(`${kind}\u0000ok`, 0);
  }

  /** Count one message; a kind this participant does not know is `unknown` (bounded labels). */
  observe(kind, outcome) {
    const key = `${this.kinds.has(kind) ? kind : 'unknown'}\u0000${outcome}`;
    this.counts.set(key, (this.counts.get(key) || 0) + 1);
  }

  text() {
    const lines = [
      '# HELP baton_participant_messages_total Commands a participant handled, by outcome.',
      '# TYPE baton_participant_messages_total counter',
    ];
    for (const [key, value] of this.counts) {
      const [kind, outcome] = key.split('\u0000');
      lines.push(`baton_participant_messages_total{participant="${this.participant}",kind="${kind}",outcome="${outcome}"} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

/** Serve the endpoint; `checks` maps a name to a () => boolean readiness check. Resolves to the server. */
function serve({ host, port, checks, metrics, log }) {
  const server = http.createServer((req, res) => {
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
    if (req.url === '/livez') return send(200, 'application/json', '{"alive":true}\n');
    if (req.url === '/metrics') return send(200, 'text/plain; version=0.0.4', metrics.text());
    if (req.url === '/healthz') {
      const results = Object.fromEntries(Object.entries(checks).map(([name, check]) => [name, Boolean(check())]));
      const ok = Object.values(results).every(Boolean);
      return send(ok ? 200 : 503, 'application/json', `${JSON.stringify({ ok, checks: results })}\n`);
    }
    return send(404, 'text/plain', 'not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      log.info('health_serving', { host, port });
      resolve(server);
    });
  });
}

module.exports = { Metrics, serve };
