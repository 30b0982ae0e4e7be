// chart.js: a uPlot line chart as a preact component. The chart is made
// again when the series change, fed with setData otherwise, and follows
// its container's width.

import { html, useEffect, useRef } from './vendor/htm-preact-standalone-3.1.1.js';
import uPlot from './vendor/uplot-1.6.32.esm.js';

export const PALETTE = ['#3b82f6', '#ef4444', '#10b981', '#f59e0b', '#8b5cf6', '#ec4899', '#14b8a6', '#a3a3a3', '#84cc16', '#f97316'];

/**
 * Props: `series` [{label, stroke?}], `data` [xs (unix seconds), ys…],
 * `height` (px), `testid`, `yRange` ([min, max] to fix the y scale),
 * `xWindow` (seconds of x to show, ending at the newest point).
 */
export function LineChart({ series, data, height = 220, testid, yRange, xWindow, label }) {
  const box = useRef(null);
  const plot = useRef(null);
  const dataRef = useRef(data);
  dataRef.current = data;
  const key = series.map((s) => s.label).join('\u0000');

  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const axis = { stroke: '#8a8f98', grid: { stroke: 'rgba(128,128,128,0.18)' }, ticks: { stroke: 'rgba(128,128,128,0.3)' } };
    const opts = {
      width: Math.max(200, el.clientWidth || 600),
      height,
      // A lone point gets a minute either side rather than uPlot's years.
      // `xWindow` (seconds) shows that much before the newest point.
      scales: { x: { time: true, range: (u, min, max) => {
        const xs = u.data[0] || [];
        if (xWindow && xs.length) return [xs[xs.length - 1] - xWindow, xs[xs.length - 1]];
        return xs.length === 1 ? [xs[0] - 60, xs[0] + 60] : [min, max];
      } }, y: yRange ? { range: yRange } : { range: (u, min, max) => [0, Math.max(1, max || 0) * 1.1] } },
      axes: [axis, { ...axis, size: 50 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.stroke || PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: false,
        })),
      ],
    };
    const u = new uPlot(opts, dataRef.current, el);
    plot.current = u;
    const ro = typeof ResizeObserver !== 'undefined'
      ? new ResizeObserver(() => {
        const w = Math.max(200, el.clientWidth);
        if (w && w !== u.width) u.setSize({ width: w, height });
      })
      : null;
    if (ro) ro.observe(el);
    return () => {
      if (ro) ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [key, height]);

  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);

  return html`<div class="chart" data-testid=${testid} ref=${box} role="img" aria-label=${label || 'chart'}></div>`;
}
