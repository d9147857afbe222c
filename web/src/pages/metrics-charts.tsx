/** Charts of a function's metrics over time (chart.js; loaded only with the function page). */
import { useEffect, useRef } from 'react';
import { CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip } from 'chart.js';
import type { FunctionMetrics } from '../api/resources.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

export type Sample = FunctionMetrics & { at: number };

/** Counters become per-interval deltas (a restart that lowers a counter counts as 0). */
function deltas(samples: Sample[], pick: (s: Sample) => number): number[] {
  return samples.slice(1).map((s, i) => Math.max(0, pick(s) - pick(samples[i]!)));
}

function LineChart({ title, labels, series }: { title: string; labels: string[]; series: Array<{ label: string; data: number[]; color: string }> }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    chart.current = new Chart(canvas.current, {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
    });
    return () => { chart.current?.destroy(); chart.current = null; };
  }, [title]);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = labels;
    c.data.datasets = series.map((s) => ({ label: s.label, data: s.data, borderColor: s.color, backgroundColor: s.color, pointRadius: 0, tension: 0.2 }));
    c.update();
  });
  return <div className="chart"><h3>{title}</h3><canvas ref={canvas} aria-label={title} /></div>;
}

export function MetricsCharts({ samples }: { samples: Sample[] }) {
  if (samples.length < 2) return <p className="muted">Collecting samples…</p>;
  const labels = samples.slice(1).map((s) => new Date(s.at).toLocaleTimeString());
  const last = samples.at(-1)!;
  return (
    <div className="charts" data-testid="metrics">
      <p className="small muted">Totals: {last.requests} invocations, {last.errors} errors, {last.timeouts} timeouts, {last.coldStarts} cold starts; p50 {last.latencyMs.p50} ms, p99 {last.latencyMs.p99} ms.</p>
      <LineChart title="Invocations" labels={labels} series={[{ label: 'invocations', data: deltas(samples, (s) => s.requests), color: '#2563eb' }]} />
      <LineChart title="Errors" labels={labels} series={[{ label: 'errors', data: deltas(samples, (s) => s.errors), color: '#dc2626' }, { label: 'timeouts', data: deltas(samples, (s) => s.timeouts), color: '#f59e0b' }]} />
      <LineChart title="Duration (ms)" labels={labels} series={[{ label: 'p50', data: samples.slice(1).map((s) => s.latencyMs.p50), color: '#16a34a' }, { label: 'p99', data: samples.slice(1).map((s) => s.latencyMs.p99), color: '#9333ea' }]} />
      <LineChart title="Cold starts" labels={labels} series={[{ label: 'cold starts', data: deltas(samples, (s) => s.coldStarts), color: '#0891b2' }]} />
    </div>
  );
}
