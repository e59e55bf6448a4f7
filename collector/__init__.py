"""egresswatch collector: records and filings in, findings and reports out."""
