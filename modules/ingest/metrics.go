package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const metricNamespace = "hop_ingest"

// writerMetrics describe a batch writer; the local log reader and the stream
// services each own one, told apart by the constant label source="log"|"stream".
type writerMetrics struct {
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	rows          prometheus.Counter
	rejected      prometheus.Counter
	errors        prometheus.Counter
}

func newWriterMetrics(source string) *writerMetrics {
	labels := prometheus.Labels{"source": source}
	return &writerMetrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricNamespace, Name: "batch_size",
			Help:        "Clicks per batch written to click_logs.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 4, 8), // 1 .. 16384
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricNamespace, Name: "batch_duration_seconds",
			Help:        "Time to enrich and write one batch to click_logs, including retries of the idempotent path.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "rows_written_total",
			Help:        "Clicks handed to click_logs (replayed duplicates included, inserted once).",
			ConstLabels: labels,
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "rows_rejected_total",
			Help:        "Clicks PostgreSQL refused as invalid data; logged and skipped so one row cannot block a batch.",
			ConstLabels: labels,
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "write_errors_total",
			Help:        "Failed batch writes (retried with backoff).",
			ConstLabels: labels,
		}),
	}
}

func (m *writerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchSize, m.batchDuration, m.rows, m.rejected, m.errors}
}

// pipelineMetrics count where clicks went on the redirect side, and what the
// readers had to skip or lost.
type pipelineMetrics struct {
	published   prometheus.Counter
	fallback    prometheus.Counter
	dropped     prometheus.Counter
	breakerOpen prometheus.Gauge
	undecodable prometheus.Counter
	resets      prometheus.Counter
}

func newPipelineMetrics() *pipelineMetrics {
	return &pipelineMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "published_total",
			Help: "Clicks acknowledged by Redis (XADD).",
		}),
		fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "fallback_total",
			Help: "Clicks fsync'd to the local click log because Redis is absent, failing or slow.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "dropped_total",
			Help: "Clicks dropped because neither Redis nor the local click log (full or its disk failing) could take them.",
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "redis_breaker_open",
			Help: "1 while the Redis circuit breaker is open and clicks go to the local click log.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "undecodable_total",
			Help: "Stream or local log entries that could not be decoded; logged and skipped.",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "stream_resets_total",
			Help: "Times Redis lost the click stream and its consumer group (restart without persistence, FLUSHALL).",
		}),
	}
}

func (m *pipelineMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.fallback, m.dropped, m.breakerOpen, m.undecodable, m.resets}
}

// logMetrics describe the local click log.
type logMetrics struct {
	fsyncs  prometheus.Counter
	entries prometheus.Counter
}

func newLogMetrics() *logMetrics {
	return &logMetrics{
		fsyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "log_commits_total",
			Help: "Group commits (one write and one fsync each) to the local click log.",
		}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "log_entries_written_total",
			Help: "Entries (up to 256 clicks each) written to the local click log.",
		}),
	}
}

func (m *logMetrics) collectors(l *clickLog) []prometheus.Collector {
	return []prometheus.Collector{m.fsyncs, m.entries,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "log_bytes",
			Help: "Size of the local click log on disk.",
		}, func() float64 { b, _ := l.usage(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "log_entries",
			Help: "Entries in the local click log not yet truncated after their commit to PostgreSQL.",
		}, func() float64 { _, n := l.usage(); return float64(n) }),
	}
}

// streamMetrics describe the Redis Stream as the services last saw it.
type streamMetrics struct {
	streamLength     prometheus.Gauge
	lag              prometheus.Gauge
	pending          prometheus.Gauge
	trimmed          prometheus.Counter
	claimed          prometheus.Counter
	consumersRemoved prometheus.Counter
}

func newStreamMetrics() *streamMetrics {
	return &streamMetrics{
		streamLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "stream_length",
			Help: "Entries in the clicks stream (XLEN).",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "consumer_lag",
			Help: "Entries not yet delivered to the consumer group; -1 when Redis cannot tell.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "pending",
			Help: "Entries delivered to the consumer group but not yet acknowledged.",
		}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "trimmed_total",
			Help: "Acknowledged entries removed from the stream by XTRIM MINID.",
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "claimed_total",
			Help: "Entries reclaimed with XAUTOCLAIM from consumers that stopped.",
		}),
		consumersRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "consumers_removed_total",
			Help: "Consumers deleted from the group after staying idle with nothing pending, so instances that changed names (a new hostname per container) leave none behind.",
		}),
	}
}

func (m *streamMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streamLength, m.lag, m.pending, m.trimmed, m.claimed, m.consumersRemoved}
}

// register registers every collector, or none: a nil reg keeps metrics private.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	return nil
}
