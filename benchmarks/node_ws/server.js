'use strict';
// Node's `ws` as a peer of labkit in `labkit bench`. Started by labkit/bench/peers/node.py.
//
//   node server.js [--port P] [--redis redis://127.0.0.1:PORT/0]
//
// Without --redis (fanout): every text frame a client sends is written to every open client,
// encoded once (one Buffer for all sends). With --redis (latency, two processes): a received
// frame is PUBLISHed on Redis, and every frame that arrives from Redis is written to every
// client, so two processes form one system as labkit's gateways do. `{"type":"ping"}` is
// answered with `{"type":"pong"}`. Prints {"event":"ready","port":P,"pid":N} on stdout, answers
// {"cmd":"stats"} and exits at {"cmd":"quit"} or at the end of stdin (bench line protocol).
const { WebSocketServer, WebSocket } = require('ws');
const readline = require('readline');

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const port = Number(option('--port', '0'));
const redisUrl = option('--redis', null);
const TOPIC = 'labkit:bench:node';
const PING = '{"type":"ping"}';
const PONG = Buffer.from('{"type":"pong"}');
const counts = { received: 0, deliveries: 0, pongs: 0 };

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  backlog: 4096,
  clientTracking: true,
});

function broadcast(buffer) {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) {
      client.send(buffer, { binary: false });
      counts.deliveries += 1;
    }
  }
}

let publisher = null;
if (redisUrl) {
  const Redis = require('ioredis');
  publisher = new Redis(redisUrl);
  const subscriber = new Redis(redisUrl);
  subscriber.subscribe(TOPIC);
  subscriber.on('messageBuffer', (_channel, message) => broadcast(message));
}

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length === PING.length && data.toString() === PING) {
      counts.pongs += 1;
      ws.send(PONG, { binary: false });
      return;
    }
    counts.received += 1;
    if (publisher) publisher.publish(TOPIC, data);
    else broadcast(data);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  const out = { event: 'ready', port: wss.address().port, pid: process.pid };
  process.stdout.write(JSON.stringify(out) + '\n');
});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let cmd = {};
  try { cmd = JSON.parse(line); } catch (e) { return; }
  if (cmd.cmd === 'quit') process.exit(0);
  if (cmd.cmd === 'stats') {
    const out = { event: 'stats', connections: wss.clients.size, ...counts };
    process.stdout.write(JSON.stringify(out) + '\n');
  }
});
lines.on('close', () => process.exit(0));
