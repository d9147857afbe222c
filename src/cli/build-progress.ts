/**
 * @module cli/build-progress
 * What the build commands show while they wait, on stderr (stdout carries only the result, e.g.
 * the image reference, so `ref=$(slipway build …)` works). On a terminal: log lines scroll
 * above one status line that is redrawn in place — a spinner, the phase and the elapsed time;
 * elsewhere (CI logs, pipes): plain lines, and each new phase once as a `slipway: …` line.
 * Plain ANSI (carriage return, erase line); nothing to restore when the process dies.
 */

const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** `12.3 s`, `4m05s`, `1h02m`. */
export function formatElapsed(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** `1.2 MB` and the like. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The phase a log line announces, if it announces one (buildah's and Slipway's own lines). */
export function phaseOf(line: string): string | undefined {
  const step = /^STEP (\d+\/\d+): (.*)$/.exec(line);
  if (step) return `step ${step[1]}: ${step[2]}`;
  if (/^\[slipway\] .*pushing to /.test(line)) return 'pushing';
  if (/^\[slipway\] pushed /.test(line)) return 'pushed';
  if (/^\[slipway\] packing /.test(line)) return 'packing the root file system';
  if (/^\[slipway\] preparing a container/.test(line)) return 'preparing the builder';
  const named = /^\[slipway\] step (\S+): /.exec(line);
  if (named) return `step ${named[1]}`;
  if (/^cloned /.test(line)) return 'cloned';
  if (/^\[slipway\] building /.test(line)) return 'building';
  return undefined;
}

export class Progress {
  private readonly tty: boolean;
  private phase = '';
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr, options: { tty?: boolean } = {}) {
    this.tty = options.tty ?? (out.isTTY === true && process.env.TERM !== 'dumb');
  }

  /** Starts redrawing the status line (terminals only). */
  start(phase: string): this {
    this.setPhase(phase);
    if (this.tty && !this.timer) {
      this.timer = setInterval(() => this.draw(), 100);
      this.timer.unref();
    }
    return this;
  }

  setPhase(phase: string): void {
    if (phase === this.phase) return;
    this.phase = phase;
    if (this.tty) this.draw();
    else this.out.write(`slipway: ${phase}\n`);
  }

  /** One line of output above the status line. */
  line(text: string): void {
    const phase = phaseOf(text);
    if (this.tty) {
      this.clear();
      this.out.write(`${text}\n`);
      if (phase) this.phase = phase;
      this.draw();
    } else {
      this.out.write(`${text}\n`);
      if (phase) this.phase = phase; // the line itself says it
    }
  }

  /** Removes the status line for good; `message` (if any) is printed in its place. */
  stop(message?: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty) this.clear();
    if (message) this.out.write(`${message}\n`);
  }

  elapsed(): string {
    return formatElapsed(Date.now() - this.started);
  }

  private clear(): void {
    if (!this.drawn) return;
    this.out.write('\r\x1b[2K');
    this.drawn = false;
  }

  private draw(): void {
    if (!this.tty || !this.phase) return;
    this.frame = (this.frame + 1) % frames.length;
    const columns = this.out.columns && this.out.columns > 20 ? this.out.columns : 80;
    let text = `${frames[this.frame]} ${this.phase} (${this.elapsed()})`;
    if (text.length > columns - 1) {
      const suffix = ` (${this.elapsed()})`;
      text = `${text.slice(0, columns - 2 - suffix.length)}…${suffix}`;
    }
    this.out.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }
}
