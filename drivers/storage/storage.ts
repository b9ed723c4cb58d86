import type { CallOpts } from '../call.ts';

/**
 * Read-only attachment of a template's rootfs image, the origin of every CoW
 * disk made from it. The refcount across sandboxes lives in actors/loop-registry;
 * this driver does the attach and detach themselves.
 * Backends: losetup (dm) and a pass-through for the clone backend, whose
 * "device" is the image file itself.
 */
export interface LoopDriver {
  /** Attaches `imagePath` read-only and returns the device path; an existing attachment of the same file is reused. */
  attach(imagePath: string, opts: CallOpts): Promise<string>;
  /** Detaches; a device that is already gone is not an error. */
  detach(device: string, imagePath: string, opts: CallOpts): Promise<void>;
  /** Size in bytes of the attached origin (blockdev --getsize64 or the file size). */
  sizeBytes(device: string, opts: CallOpts): Promise<number>;
}

export interface DiskRequest {
  /** Device name derived from the validated sandbox id with the backend's fixed prefix. */
  name: string;
  /** What `LoopDriver.attach` returned for the template's rootfs. */
  originDevice: string;
  /** The template's rootfs.ext4. */
  originPath: string;
  /** The sandbox's private CoW file: sandboxes/{id}/rootfs.cow. */
  cowPath: string;
  /** Size of the sandbox's disk: max(diskSizeMB, origin size). */
  sizeBytes: number;
}

export interface DiskHandle {
  name: string;
  /** What the VMM is given as its disk: /dev/mapper/NAME, or the clone file. */
  devicePath: string;
  cowPath: string;
}

/**
 * The sandbox's copy-on-write disk over a read-only origin.
 * Backends: device-mapper `snapshot` target (production) and a reflink/sparse
 * clone (hosts without device-mapper, the embedded default).
 */
export interface DiskDriver {
  readonly kind: 'dm' | 'clone';
  /**
   * The device name of a sandbox's disk (the driver's prefix + the id). Optional:
   * without it the runtime uses `sbxd-<id>`; with it, a driver built with another
   * prefix (tests use `sbxt-`) gets names it accepts.
   */
  deviceName?(sandboxId: string): string;
  /** Makes a zero-started CoW file and the device over origin+CoW. Idempotent for the same request. */
  create(req: DiskRequest, opts: CallOpts): Promise<DiskHandle>;
  /** Re-attaches the device over an existing CoW (resume). */
  attach(req: DiskRequest, opts: CallOpts): Promise<DiskHandle>;
  /** Removes the device, keeps the CoW file. A device that is already gone is not an error. */
  remove(handle: DiskHandle, opts: CallOpts): Promise<void>;
  /** Deletes the CoW file. A missing file is not an error. */
  discard(cowPath: string, opts: CallOpts): Promise<void>;
  /** Copies the attached device's current content into a sparse file at `outPath`. */
  flatten(handle: DiskHandle, outPath: string, opts: CallOpts): Promise<void>;
  /**
   * Flattens origin+CoW without an attached sandbox disk (paused snapshot): a
   * temporary device under its own name, removed before returning; the CoW is left intact.
   */
  flattenDetached(req: DiskRequest, outPath: string, opts: CallOpts): Promise<void>;
}
