import { randomBytes } from 'node:crypto';
import { mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { SandboxdError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { CallOpts } from '../drivers/call.ts';
import { SYSTEM_TEAM, type TemplateInfo, type TemplateStore } from '../drivers/files/files.ts';

/**
 * First start: a newcomer has no template to boot, so the agent makes a small
 * `system/base` one, an empty ext4 image built on the spot. mkfs.ext4 works
 * on a regular file without privileges (-F: no prompt about it not being a
 * block device). The image is built in a temp file and imported, so a crash
 * leaves no half-made template.
 */
export const BASE_TEMPLATE_ID = 'base';
const BASE_IMAGE_MB = 64;
const MKFS_TIMEOUT_MS = 60_000;

export type BaseTemplateOutcome = { kind: 'exists' } | { kind: 'created'; template: TemplateInfo } | { kind: 'mkfs-missing'; detail: string };

export async function ensureBaseTemplate(
  templates: TemplateStore,
  workDir: string,
  log: Logger,
  opts: CallOpts & { mkfs?: string; sizeMB?: number },
): Promise<BaseTemplateOutcome> {
  if (await templates.exists(SYSTEM_TEAM, BASE_TEMPLATE_ID, opts)) return { kind: 'exists' };
  await mkdir(workDir, { recursive: true });
  const image = join(workDir, `base-${randomBytes(4).toString('hex')}.ext4.tmp`);
  try {
    await writeFile(image, '');
    await truncate(image, (opts.sizeMB ?? BASE_IMAGE_MB) * 1024 * 1024);
    try {
      await execa(opts.mkfs ?? 'mkfs.ext4', ['-q', '-F', '-L', 'sandboxd-base', '-E', 'root_owner=0:0', image], {
        timeout: MKFS_TIMEOUT_MS,
        cancelSignal: opts.signal,
        stdin: 'ignore',
      });
    } catch (err) {
      const e = err as { code?: string; shortMessage?: string; stderr?: string };
      if (e.code === 'ENOENT') {
        const detail = `mkfs.ext4 not found (install e2fsprogs); no base template was made, so creates fail until one is imported`;
        log.error(detail);
        return { kind: 'mkfs-missing', detail };
      }
      throw new SandboxdError('operation_failed', `mkfs.ext4 failed: ${e.stderr || e.shortMessage || String(err)}`, { step: 'base-template' });
    }
    let template: TemplateInfo;
    try {
      template = await templates.importRootfs(SYSTEM_TEAM, BASE_TEMPLATE_ID, image, opts);
    } catch (err) {
      // Another agent on the same data dir got there first.
      if (err instanceof SandboxdError && err.code === 'already_exists') return { kind: 'exists' };
      throw err;
    }
    log.info({ template: `${SYSTEM_TEAM}/${BASE_TEMPLATE_ID}`, sizeMB: opts.sizeMB ?? BASE_IMAGE_MB }, 'made the base template (an empty ext4 image)');
    return { kind: 'created', template };
  } finally {
    await rm(image, { force: true });
  }
}
