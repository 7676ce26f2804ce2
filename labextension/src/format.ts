/** Small formatters: every run string is rendered by React as text, never as HTML. */

export function dollars(value: number | null | undefined): string {
  const v = value || 0;
  if (v === 0) {
    return '$0';
  }
  return v < 0.01 ? '<$0.01' : `$${v.toFixed(2)}`;
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '–';
  }
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  }
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

export function metric(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return 'nan';
  }
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
    return value.toExponential(3);
  }
  return String(Number(value.toPrecision(4)));
}

/** The status bar text: "runctl: 2 running · $1.24/h". */
export function statusText(running: number, rate: number): string {
  return `runctl: ${running} running · $${(rate || 0).toFixed(2)}/h`;
}
