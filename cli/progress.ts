import type { StateNotice } from '../server/protocol.ts';
import { shortStep } from './format.ts';

/**
 * The live step of a long operation, fed by sandbox.state notifications. On a
 * terminal: one line redrawn in place with a spinner and the elapsed time. Not
 * on a terminal (logs, CI, tests): one plain line per step, e.g.
 * `progress: sb-1 pausing snapshotVm (+0.12s)`.
 */
export class ProgressDisplay {
  private readonly started = performance.now();
  private current = '';
  private frame = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly tty: boolean,
  ) {
    if (tty) {
      this.timer = setInterval(() => this.redraw(), 100);
      this.timer.unref();
    }
  }

  update(n: StateNotice): void {
    const text = `${n.sandboxId} ${n.status} ${shortStep(n.status, n.step)}`.trimEnd();
    if (text === this.current) return;
    this.current = text;
    if (this.tty) this.redraw();
    else this.out.write(`progress: ${text} (+${this.elapsed()}s)\n`);
  }

  /** Clears the live line; the result is printed after it. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.tty && this.current !== '') this.out.write('\r\x1b[2K');
  }

  private redraw(): void {
    if (this.current === '') return;
    const spinner = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'[this.frame++ % 10];
    this.out.write(`\r\x1b[2K${spinner} ${this.current} (${this.elapsed()}s)`);
  }

  private elapsed(): string {
    return ((performance.now() - this.started) / 1000).toFixed(2);
  }
}
