import { stat } from 'node:fs/promises';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { assertHostPath } from './names.ts';
import type { LoopDriver } from './storage.ts';

/**
 * The clone backend's LoopDriver: no loop device at all. The "device" is the
 * image file itself, which the clone disk copies from; nothing to detach.
 */
export class FileLoopDriver implements LoopDriver {
  async attach(imagePath: string, _opts: CallOpts): Promise<string> {
    assertHostPath('image', imagePath);
    const st = await stat(imagePath).catch(() => {
      throw new SandboxdError('not_found', `image not found: ${imagePath}`, { step: 'loop.attach' });
    });
    if (!st.isFile()) throw new SandboxdError('invalid_argument', `not a regular file: ${imagePath}`, { step: 'loop.attach' });
    return imagePath;
  }

  async detach(device: string, imagePath: string, _opts: CallOpts): Promise<void> {
    assertHostPath('device', device);
    assertHostPath('image', imagePath);
  }

  async sizeBytes(device: string, _opts: CallOpts): Promise<number> {
    assertHostPath('device', device);
    const st = await stat(device).catch(() => {
      throw new SandboxdError('not_found', `image not found: ${device}`, { step: 'loop.size' });
    });
    return st.size;
  }

  /** The image is its own "device" for as long as it exists. */
  async findByBackingFile(filePath: string, _opts: CallOpts): Promise<string[]> {
    assertHostPath('image', filePath);
    return (await stat(filePath).then((s) => s.isFile(), () => false)) ? [filePath] : [];
  }
}
