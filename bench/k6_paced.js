// The load generator's ceiling, measured with a compiled load tool: k6 (Go) runs the paced-stream workload of
// scenario 2 against a ChatService (the floor or the proxy) over the same mTLS, so its frames/s, stalls and CPU
// can be set beside the Python load generator's. Driven by bench/ceiling.py through environment variables:
// TARGET host:port, PROTO_DIR, CA/CERT/KEY (PEM paths), VUS, DURATION (e.g. "4s"), MODEL, ORG, STALL_MS, SUMMARY.
import grpc from 'k6/net/grpc';
import { Counter, Trend } from 'k6/metrics';

const textFrames = new Counter('text_frames');
const streamsDone = new Counter('streams_done');
const streamErrors = new Counter('stream_errors');
const stalledStreams = new Counter('stalled_streams');
const gapMs = new Trend('gap_ms');

const client = new grpc.Client();
client.load([__ENV.PROTO_DIR], 'byok/proxy/v1/chat_service.proto');
const tls = { cacerts: [open(__ENV.CA)], cert: open(__ENV.CERT), key: open(__ENV.KEY) };
const stallMs = Number(__ENV.STALL_MS || 40);

export const options = {
  scenarios: { paced: { executor: 'constant-vus', vus: Number(__ENV.VUS), duration: __ENV.DURATION,
                        gracefulStop: '30s' } },
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
};

let connected = false;

export default function () {
  if (!connected) {
    client.connect(__ENV.TARGET, { tls: tls, timeout: '20s' });
    connected = true;
  }
  const stream = new grpc.Stream(client, 'byok.proxy.v1.ChatService/StreamChat', { timeout: '60s' });
  let last = 0;
  let stalled = false;
  stream.on('data', (m) => {
    if (m.choices && m.choices.length > 0 && m.choices[0].text) {
      const now = Date.now();
      if (last > 0) {
        const gap = now - last;
        gapMs.add(gap);
        if (gap > stallMs) stalled = true;
      }
      last = now;
      textFrames.add(1);
    }
  });
  stream.on('error', () => { streamErrors.add(1); });
  stream.on('end', () => {
    streamsDone.add(1);
    if (stalled) stalledStreams.add(1);
  });
  stream.write({ parameters: { tenant: { org_id: __ENV.ORG }, model: __ENV.MODEL, provider: 'openai',
                               messages: [{ role: 'ROLE_USER', content: 'hi' }] } });
  stream.end();
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data.metrics) };
}
