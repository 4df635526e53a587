/**
 * A progress bar on stderr. On a terminal it redraws one line; otherwise (CI, pipes) it prints a line at
 * most every few seconds, so logs stay readable.
 */
export class ProgressBar {
  private lastLine = 0;
  private readonly tty: boolean;
  private readonly started = Date.now();

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
  ) {
    this.tty = stream.isTTY;
  }

  update(done: number, total: number, detail = ''): void {
    if (this.quiet) return;
    const now = Date.now();
    if (!this.tty && now - this.lastLine < 3000 && done < total) return;
    this.lastLine = now;
    const fraction = total === 0 ? 1 : Math.min(1, done / total);
    const width = 28;
    const filled = Math.round(fraction * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const elapsed = ((now - this.started) / 1000).toFixed(1);
    const line = `${this.label} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ${done}/${total} ${detail} ${elapsed}s`;
    this.stream.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  finish(): void {
    if (!this.quiet && this.tty) this.stream.write('\n');
  }
}
