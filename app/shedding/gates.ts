import type { Registry } from 'prom-client';
import { createBreaker, type Breaker } from '../../lib/breaker.js';
import type { Config } from '../../lib/config.js';
import type { Priority } from '../../lib/event-schema.js';
import type { Logger } from '../../lib/logger.js';

/** The classes that have a gate: critical is never gated. */
export const GATED = ['normal', 'low'] as const satisfies readonly Priority[];
type Gated = (typeof GATED)[number];

/** The half-open trial of a class gate failed: the class is still shed entirely. */
class GateTrialError extends Error {
  constructor(priority: Gated) {
    super(`${priority} traffic is still shed entirely`);
    this.name = 'GateTrialError';
  }
}

/** The class gates: `update` on each controller tick, `refuses` per request. */
export interface ClassGates {
  /** Opens a class's gate once it has been shed entirely (for every tenant) for GATE_OPEN_AFTER_MS. */
  update(): void;
  /** Whether the class's gate refuses this request; a promise only when half-open (the trial). */
  refuses(priority: Priority): boolean | Promise<boolean>;
  /** Whether the class's gate is half-open (its next request is the trial, which answers asynchronously). */
  halfOpen(priority: Priority): boolean;
  readonly breakers: readonly Breaker[];
  shutdown(): void;
}

/**
 * Each non-critical class has a gate, an opossum breaker opened once the class has been shed entirely for
 * GATE_OPEN_AFTER_MS. An open gate refuses the class outright (reason `breaker`) for GATE_RESET_TIMEOUT_MS,
 * whatever the controller does meanwhile; then, half-open, the next request of the class is the trial: if the
 * class is no longer shed entirely the gate closes and that request takes the ordinary decision, otherwise the
 * gate opens again. `fullyShed` says whether a class is shed entirely now.
 */
export function createClassGates(
  config: Config,
  registry: Registry,
  logger: Logger,
  fullyShed: (priority: Priority) => boolean,
): ClassGates {
  const create = (priority: Gated): Breaker =>
    createBreaker({
      name: `gate_${priority}`,
      registry,
      logger,
      timeoutMs: 0,
      resetTimeoutMs: config.gateResetTimeoutMs,
      enabled: config.shedMode !== 'off',
    });
  const gates: Record<Gated, Breaker> = { normal: create('normal'), low: create('low') };
  const fullySince: Record<Gated, number | undefined> = { normal: undefined, low: undefined };

  return {
    breakers: Object.values(gates),
    update() {
      if (config.shedMode === 'off') return;
      const now = Date.now();
      for (const priority of GATED) {
        if (!fullyShed(priority)) {
          fullySince[priority] = undefined;
          continue;
        }
        const since = (fullySince[priority] ??= now);
        if (now - since >= config.gateOpenAfterMs && gates[priority].state() === 'closed') gates[priority].open();
      }
    },
    refuses(priority) {
      if (priority === 'critical') return false;
      const gate = gates[priority];
      const state = gate.state();
      if (state === 'closed') return false;
      if (state === 'open') return true;
      return gate
        .fire(async () => {
          if (fullyShed(priority)) throw new GateTrialError(priority);
        })
        .then(
          () => false,
          () => true,
        );
    },
    halfOpen(priority) {
      return priority !== 'critical' && gates[priority].state() === 'half_open';
    },
    shutdown() {
      for (const gate of Object.values(gates)) gate.shutdown();
    },
  };
}
