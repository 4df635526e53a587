import { LightmemError } from '../core/errors.js';
import type { InputItem } from '../ingest/index.js';

/**
 * Guards the isolation the recall benchmarks rely on: every event a loader makes for a case lands in the
 * case's own scope, or the run stops.
 */
export function* inCaseScope(
  items: Iterable<InputItem>,
  scope: { readonly tenantId: string; readonly userId: string },
  caseId: string,
): Generator<InputItem> {
  for (const item of items) {
    if (item.result.ok) {
      const { tenantId, userId } = item.result.event;
      if (tenantId !== scope.tenantId || userId !== scope.userId) {
        throw new LightmemError(
          'internal',
          `case ${caseId}: the loader put ${item.label} in ${tenantId}/${userId}, not the case's scope ${scope.tenantId}/${scope.userId}`,
        );
      }
    }
    yield item;
  }
}
