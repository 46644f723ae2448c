/** `dcvd product list|create`: the operator's product catalogue (CONTRACT §12). */
import { Command } from 'commander';
import type { ProductView } from '../orders/products.ts';
import { opt, print, withAdmin, withJson, withStoreOptions, type StoreFlags } from './options.ts';

function parseWhole(text: string): number {
  const n = /^\d{1,16}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`expected a whole number from 1, got ${JSON.stringify(text)}`);
  return n;
}

function parseDaysList(text: string): number[] {
  return text.split(',').map((d) => parseWhole(d));
}

export function describeProduct(p: ProductView): string {
  const kind = p.multiDomain ? `multi-domain, up to ${p.maxDomains} domains` : 'single-domain';
  return `product ${p.code} ${p.name}: ${kind}${p.wildcard ? ', wildcards' : ''}, days ${p.allowedDays.join(',')}`;
}

interface ProductCreateFlags extends StoreFlags {
  json?: boolean;
  code: number;
  name: string;
  multiDomain?: boolean;
  maxDomains?: number;
  wildcard?: boolean;
  days: number[];
}

export function productCommands(): Command {
  const product = new Command('product');
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));
  common(
    product
      .command('create')
      .description('add a product code')
      .addOption(opt('--code <n>', 'the product code of the API', parseWhole).makeOptionMandatory())
      .addOption(opt('--name <text>', 'a name for people: 1 to 128 characters on one line, no invisible characters').makeOptionMandatory())
      .addOption(opt('--multi-domain', 'orders may have several domains (domainNames, dcvEmailAddresses)'))
      .addOption(opt('--max-domains <n>', 'most domains of one order (multi-domain; default 1)', parseWhole))
      .addOption(opt('--wildcard', 'names may be wildcards (*.example.com)'))
      .addOption(opt('--days <list>', 'allowed values of days, comma-separated', parseDaysList).makeOptionMandatory()),
  ).action(async (flags: ProductCreateFlags) => {
    const view = await withAdmin(flags, (a) =>
      a.createProduct({
        code: flags.code,
        name: flags.name,
        multiDomain: flags.multiDomain === true,
        maxDomains: flags.maxDomains ?? 1,
        wildcard: flags.wildcard === true,
        allowedDays: flags.days,
      }),
    );
    print(flags.json, view, () => `created ${describeProduct(view)}`);
  });
  common(product.command('list').description('list the product codes')).action(async (flags: StoreFlags & { json?: boolean }) => {
    const views = await withAdmin(flags, (a) => a.listProducts());
    print(flags.json, views, () => views.map(describeProduct).join('\n'));
  });
  return product;
}
