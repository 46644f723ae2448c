/**
 * Writes docs/openapi.json from the internal API's route table and typebox
 * schemas (src/admin/http.ts): the one source of truth. Run after changing a
 * route: `node --import tsx scripts/openapi.ts`. test/admin-api.test.ts checks
 * that the served document equals the file.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { adminRoutes, openApiDocument } from '../src/admin/http.ts';
import type { AdminService } from '../src/admin/service.ts';
import type { Metrics } from '../src/metrics.ts';

// Building the document reads the table only; no handler runs, so no service or metrics are needed.
const routes = adminRoutes({} as AdminService, { metrics: {} as Metrics, openApi: () => undefined });
const path = fileURLToPath(new URL('../../../docs/openapi.json', import.meta.url));
writeFileSync(path, `${JSON.stringify(openApiDocument(routes), null, 2)}\n`);
console.log(`wrote ${path}`);
