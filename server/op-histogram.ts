import type { Metric, MetricValueWithName, Registry } from 'prom-client';

type Labels = 'operation' | 'outcome' | 'le';

interface Series {
  operation: string;
  outcome: string;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A Prometheus histogram labelled by operation and outcome, exported exactly
 * as prom-client's Histogram exports one (names, buckets, label order), but
 * cheap to observe: one per reply is two map lookups and a few additions,
 * where prom-client validates and hashes the labels every time.
 */
export class OperationHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, Map<string, Series>>();
  /** The same series in the order they first appeared (prom-client's export order). */
  readonly #order: Series[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  observe(operation: string, outcome: string, seconds: number): void {
    if (!Number.isFinite(seconds)) throw new TypeError(`Value is not a valid number: ${seconds}`);
    let byOutcome = this.#series.get(operation);
    if (byOutcome === undefined) this.#series.set(operation, (byOutcome = new Map()));
    let s = byOutcome.get(outcome);
    if (s === undefined) {
      s = { operation, outcome, counts: new Array<number>(this.upperBounds.length + 1).fill(0), sum: 0, count: 0 };
      byOutcome.set(outcome, s);
      this.#order.push(s);
    }
    let i = 0;
    while (i < this.upperBounds.length && seconds > this.upperBounds[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; values: MetricValueWithName<Labels>[]; aggregator: 'sum' }> {
    const values: MetricValueWithName<Labels>[] = [];
    for (const s of this.#order) {
      const { operation, outcome } = s;
      let acc = 0;
      this.upperBounds.forEach((le, i) => {
        acc += s.counts[i]!;
        values.push({ value: acc, metricName: `${this.name}_bucket`, labels: { le, operation, outcome } });
      });
      values.push({ value: s.count, metricName: `${this.name}_bucket`, labels: { le: '+Inf', operation, outcome } });
      values.push({ value: s.sum, metricName: `${this.name}_sum`, labels: { operation, outcome } });
      values.push({ value: s.count, metricName: `${this.name}_count`, labels: { operation, outcome } });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#series.clear();
    this.#order.length = 0;
  }
}
