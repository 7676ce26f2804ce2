import React from 'react';

/** A tiny SVG line of a metric's recent history (no library: a polyline). */
export function Sparkline(props: {
  values: (number | null)[];
  width?: number;
  height?: number;
}): JSX.Element | null {
  const width = props.width ?? 64;
  const height = props.height ?? 16;
  const points = props.values
    .map((v, i) => [i, v] as [number, number | null])
    .filter((p): p is [number, number] => p[1] !== null && isFinite(p[1]));
  if (points.length < 2) {
    return null;
  }
  const ys = points.map(p => p[1]);
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const span = hi - lo || 1;
  const last = props.values.length - 1 || 1;
  const coords = points
    .map(([i, v]) => {
      const x = (i / last) * (width - 2) + 1;
      const y = height - 1 - ((v - lo) / span) * (height - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
  return (
    <svg
      className="jp-runctl-spark"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      aria-hidden="true"
    >
      <polyline points={coords} fill="none" strokeWidth="1.2" />
    </svg>
  );
}
