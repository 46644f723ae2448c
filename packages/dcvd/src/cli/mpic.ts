/** The MPIC options (issue 19) of `serve` and `order create`, both of which select contact addresses. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultServeConfig, formatDuration, parseCount, parseDuration } from '../config.ts';
import { checkMpicUrl } from '../mpic/client.ts';
import type { MpicConfig, MpicMode } from '../mpic/corroborate.ts';
import { MIN_REMOTE_PERSPECTIVES } from '../mpic/quorum.ts';
import { opt } from './options.ts';

export interface MpicFlags {
  mpic: MpicMode;
  mpicUrl?: string;
  mpicApiKeyFile?: string;
  mpicCaFile?: string;
  mpicPerspectives: number;
  mpicTimeout: number;
}

export function withMpicOptions(cmd: Command): Command {
  const d = defaultServeConfig().mpic;
  return cmd
    .addOption(
      opt('--mpic <mode>', 'required: DNS-found contact addresses need Multi-Perspective Issuance Corroboration (without --mpic-url selecting one answers -160); off: use them without it (NOT BR 3.2.2.9-compliant)')
        .choices(['required', 'off'])
        .default(d.mode),
    )
    .addOption(opt('--mpic-url <url>', 'base URL of an Open MPIC API service (dcvd POSTs to URL/mpic); https://, or http:// on loopback only', (v) => checkMpicUrl(v)))
    .addOption(opt('--mpic-api-key-file <file>', 'file holding the MPIC API key, sent as x-api-key'))
    .addOption(opt('--mpic-ca-file <file>', 'PEM CA certificate(s) to trust for --mpic-url instead of the system\u2019s'))
    .addOption(
      opt(`--mpic-perspectives <n>`, `remote perspectives per corroboration, at least ${MIN_REMOTE_PERSPECTIVES}`, (v) => parseCount(v, MIN_REMOTE_PERSPECTIVES)).default(d.perspectives),
    )
    .addOption(opt('--mpic-timeout <duration>', 'the whole MPIC call; slower counts as not corroborated', parseDuration).default(d.timeoutMs, formatDuration(d.timeoutMs)));
}

export function mpicConfigFrom(flags: MpicFlags): MpicConfig {
  return {
    mode: flags.mpic,
    url: flags.mpicUrl,
    apiKeyFile: flags.mpicApiKeyFile === undefined ? undefined : resolve(flags.mpicApiKeyFile),
    caFile: flags.mpicCaFile === undefined ? undefined : resolve(flags.mpicCaFile),
    perspectives: flags.mpicPerspectives,
    timeoutMs: flags.mpicTimeout,
  };
}
