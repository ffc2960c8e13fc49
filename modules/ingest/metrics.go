package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const metricNamespace = "hop_ingest"

// writerMetrics describe the batch writer; the publisher's queue and the stream
// consumer each own one, told apart by the constant label source="queue"|"stream".
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

// publisherMetrics count where clicks went on the redirect side.
type publisherMetrics struct {
	published   prometheus.Counter
	fallback    prometheus.Counter
	dropped     prometheus.Counter
	breakerOpen prometheus.Gauge
	queueLength prometheus.GaugeFunc
}

func newPublisherMetrics(queueLen func() float64) *publisherMetrics {
	return &publisherMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "published_total",
			Help: "Clicks acknowledged by Redis (XADD).",
		}),
		fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "fallback_total",
			Help: "Clicks taken by the in-process queue to PostgreSQL because Redis is absent, failing or slow.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "dropped_total",
			Help: "Clicks dropped because Redis failed and the in-process queue was full.",
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "redis_breaker_open",
			Help: "1 while the Redis circuit breaker is open and clicks bypass Redis.",
		}),
		queueLength: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricNamespace, Name: "queue_length",
			Help: "Clicks waiting in the in-process queue.",
		}, queueLen),
	}
}

func (m *publisherMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.fallback, m.dropped, m.breakerOpen, m.queueLength}
}

// consumerMetrics describe the Redis Stream as the consumer last saw it.
type consumerMetrics struct {
	streamLength prometheus.Gauge
	lag          prometheus.Gauge
	pending      prometheus.Gauge
	undecodable  prometheus.Counter
	trimmed      prometheus.Counter
	claimed      prometheus.Counter
}

func newConsumerMetrics() *consumerMetrics {
	return &consumerMetrics{
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
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "undecodable_total",
			Help: "Stream entries that could not be decoded; logged and acknowledged.",
		}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "trimmed_total",
			Help: "Acknowledged entries removed from the stream by XTRIM MINID.",
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "claimed_total",
			Help: "Entries reclaimed with XAUTOCLAIM from consumers that stopped.",
		}),
	}
}

func (m *consumerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streamLength, m.lag, m.pending, m.undecodable, m.trimmed, m.claimed}
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
