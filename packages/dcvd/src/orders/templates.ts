/**
 * DCV email templates with ids (CONTRACT §5, §9): per account or global,
 * checked by the mail layer's validateTemplate when created, immutable after
 * (so "the same template" of a resend means the same content).
 */
import type { Kysely, Selectable } from 'kysely';
import type { Clock } from '../deps.ts';
import { OperatorError } from '../errors.ts';
import type { Database, DcvTemplateTable } from '../store/schema.ts';
import { DEFAULT_TEMPLATE, validateTemplate, type EmailTemplate } from '../mail/templates.ts';
import { insertedOnce } from '../store/database.ts';

export type TemplateRow = Selectable<DcvTemplateTable>;

/** account_id of global templates (account ids start at 1 in both databases). */
export const GLOBAL_SCOPE = 0;

export class TemplateStoreError extends OperatorError {
  override name = 'TemplateStoreError';
}

export interface TemplateView {
  id: number;
  account: string | null;
  subject: string;
  hasHtml: boolean;
  createdAt: string;
}

export function templateView(row: TemplateRow, login: string | null): TemplateView {
  return {
    id: row.template_id,
    account: login,
    subject: row.subject,
    hasHtml: row.html_body !== null,
    createdAt: new Date(row.created_at).toISOString(),
  };
}

export function emailTemplate(row: TemplateRow | undefined): EmailTemplate {
  if (!row) return DEFAULT_TEMPLATE;
  return row.html_body === null
    ? { subject: row.subject, text: row.text_body }
    : { subject: row.subject, text: row.text_body, html: row.html_body };
}

export class TemplateRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  /** Creates a template for an account (or GLOBAL_SCOPE); throws TemplateError for an unusable one. */
  async create(scope: number, templateId: number, template: EmailTemplate): Promise<TemplateRow> {
    if (!Number.isSafeInteger(templateId) || templateId < 1) throw new TemplateStoreError('template id must be a whole number from 1 to 2^53-1');
    validateTemplate(template);
    const existing = await this.findInScope(scope, templateId);
    const taken = () => new TemplateStoreError(`template ${templateId} already exists ${scope === GLOBAL_SCOPE ? 'globally' : 'for this account'}`, 'conflict');
    if (existing) throw taken();
    // Checked above, and again by the insert: another create of the id may come between.
    await insertedOnce(
      this.db
        .insertInto('dcv_templates')
        .values({
          account_id: scope,
          template_id: templateId,
          subject: template.subject,
          text_body: template.text,
          html_body: template.html ?? null,
          created_at: this.clock.now(),
        })
        .execute(),
      taken,
    );
    return (await this.findInScope(scope, templateId))!;
  }

  /** dcvTemplateID as the API resolves it: the account's own template, else a global one. */
  resolve(accountId: number, templateId: number): Promise<TemplateRow | undefined> {
    return this.db
      .selectFrom('dcv_templates')
      .selectAll()
      .where('template_id', '=', templateId)
      .where('account_id', 'in', [accountId, GLOBAL_SCOPE])
      .orderBy('account_id', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  byRowId(id: number): Promise<TemplateRow | undefined> {
    return this.db.selectFrom('dcv_templates').selectAll().where('id', '=', id).executeTakeFirst();
  }

  list(scope?: number): Promise<TemplateRow[]> {
    let q = this.db.selectFrom('dcv_templates').selectAll();
    if (scope !== undefined) q = q.where('account_id', '=', scope);
    return q.orderBy('account_id').orderBy('template_id').execute();
  }

  private findInScope(scope: number, templateId: number): Promise<TemplateRow | undefined> {
    return this.db.selectFrom('dcv_templates').selectAll().where('account_id', '=', scope).where('template_id', '=', templateId).executeTakeFirst();
  }
}
