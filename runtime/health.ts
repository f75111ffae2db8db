/**
 * The health endpoints every daemon serves (on its metrics listener; the directory on its API):
 * GET /healthz is 200 while the process answers at all (liveness: restart it when this fails);
 * GET /readyz is 200 only when the node can do its job, 503 otherwise, with the checks that
 * decide it as JSON so an operator sees which one fails. Each role says what "ready" means
 * (runtime/hop/hop-node.ts, client/daemon.ts, directory/http.ts); the answer's shape is shared.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Each check: true when it passes, or a short reason why not. */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, true | string>>;
}

export type ReadinessProbe = () => Readiness;

/** Ready when every check passes. */
export function readiness(checks: Record<string, true | string>): Readiness {
  return { ready: Object.values(checks).every((c) => c === true), checks };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const b = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(b) });
  res.end(res.req?.method === 'HEAD' ? undefined : b);
}

/** Answers GET/HEAD /healthz and /readyz; false (nothing written) for any other request. */
export function serveHealth(req: IncomingMessage, res: ServerResponse, probe: ReadinessProbe): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz') {
    json(res, 200, { ok: true });
    return true;
  }
  if (path === '/readyz') {
    const r = probe();
    json(res, r.ready ? 200 : 503, r);
    return true;
  }
  return false;
}
