"""Statistics tables, expectation suites, running them with Great Expectations, the report."""
