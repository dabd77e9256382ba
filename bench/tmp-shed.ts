import { Registry } from 'prom-client';
import pino from 'pino';
import { createShedder } from '../app/shedding/shedder.js';
import { loadConfig } from '../lib/config.js';
import { createLatencyWindow } from '../lib/latency-window.js';
const state = { level: 1.5, pressure: 3, backlogFloor: 0, normalHeldOffSeconds: 0, shedProbability: { critical: 0, normal: 0.5, low: 1 } };
const controller = { tick: () => state, probability: (p: string) => (p === 'low' ? 1 : p === 'normal' ? 0.5 : 0), overHardLimit: () => false, state: () => state };
const shedder = createShedder({ config: loadConfig({ SHED_MODE: 'enforce' }), latency: createLatencyWindow(60), queueDepth: async () => 0, registry: new Registry(), logger: pino({ level: 'silent' }), controller: controller as never });
for (let i = 0; i < 1000; i++) shedder.decideEarly('low', 'profile');
await new Promise((r) => setTimeout(r, 300));
shedder.tick();
let refused = 0;
for (let r = 0; r < 5; r++) {
  const t = process.cpuUsage();
  for (let i = 0; i < 200000; i++) if (shedder.decideEarly('low', 'profile')) refused++;
  const u = process.cpuUsage(t);
  console.log('decideEarly', ((u.user + u.system) / 200000).toFixed(3), 'µs', refused);
}
await shedder.close();
