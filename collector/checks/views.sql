-- The checks' shared views (DESIGN §6): what "exported in the period", "carries PI" and "persons of a
-- scenario" mean is written here once; runner.py loads this file before any check, reports.py,
-- estimates.py and persons.py read the same views. Not a check: runner.discover() skips it. The evidence
-- roll-up of a check's flagged detections (`hits`) is the other shared file, evidence.sql.
--
-- Inputs: the store's tables and views (flows, detections, pi_values, field_types, flow_recipients,
-- scenario_flows, scenarios, recipients, filing), record_persons (persons.py), and `period`, one row
-- written by views.py: period_from, period_to (the half-open period, instants), as_of (how far the period
-- has run: min(period end, report time)), days_in_period and elapsed_days (as_of - period_from), both in
-- days with fractions, computed in Python so that no check needs an engine's epoch arithmetic.
--
-- Written in the SQL that sqlglot translates faithfully to Spark (docs: engineering notes): no ordered list
-- aggregates, no epoch functions, no list slicing; tests/collector/test_checks_sql.py holds that.
-- Statements are separated by a semicolon at the end of a line; a view over a table the store has not
-- loaded yet (no filing: no scenario_flows) is skipped, so persons and estimates work without a filing.

-- Exported in the period: cross-border flows whose ts_start falls in [period_from, period_to), with the
-- destination every report and finding names: the server name, else the IP; for a pull (initiator
-- external) always the peer's IP, since its server name names the internal server (DESIGN §3).
CREATE OR REPLACE VIEW period_flows AS
SELECT f.*,
       CASE WHEN f.initiator = 'external' THEN f.dst_ip ELSE coalesce(f.server_name, f.dst_ip) END
           AS destination
FROM flows f
CROSS JOIN period p
WHERE f.cross_border AND f.ts_start >= p.period_from AND f.ts_start < p.period_to;

-- Every detection with what it carries: is_pi when its field type is PI, or missing from the catalog (a
-- finding beats silence); is_exported_data when PI or an important-data candidate.
CREATE OR REPLACE VIEW typed_detections AS
SELECT d.*,
       coalesce(ft.pi, true) AS is_pi,
       coalesce(ft.pi, true) OR d.important_subcategory IS NOT NULL AS is_exported_data
FROM detections d
LEFT JOIN field_types ft ON ft.id = d.field_type;

-- PI exports: detections of PI or important-data candidates on the period's cross-border flows, one row
-- per detection with its flow's times and destination (the rows findings take their evidence from).
CREATE OR REPLACE VIEW pi_exports AS
SELECT f.ts_start, f.ts_end, f.destination, d.*
FROM period_flows f
JOIN typed_detections d ON d.flow_id = f.flow_id
WHERE d.is_exported_data;

-- The processor's distinct persons over every cross-border flow of the period (one row).
CREATE OR REPLACE VIEW period_persons AS
SELECT count(DISTINCT rp.person_id) FILTER (WHERE rp.nonsensitive) AS persons_nonsensitive,
       count(DISTINCT rp.person_id) FILTER (WHERE rp.sensitive) AS persons_sensitive
FROM period_flows f
JOIN record_persons rp ON rp.flow_id = f.flow_id;

-- Scenario flows of the period: cross-border flows that reached a scenario's recipients (store.py's
-- scenario_flows) and started in the period.
CREATE OR REPLACE VIEW period_scenario_flows AS
SELECT s.*
FROM scenario_flows s
CROSS JOIN period p
WHERE s.ts_start >= p.period_from AND s.ts_start < p.period_to;

-- Every detection on a scenario flow of the period, with the scenario and the flow's times.
CREATE OR REPLACE VIEW scenario_detections AS
SELECT s.scenario_id, s.ts_start, s.ts_end, s.bytes_out, d.*
FROM period_scenario_flows s
JOIN typed_detections d ON d.flow_id = s.flow_id;

-- Scenario persons: per scenario and kind (subject persons_nonsensitive | persons_sensitive), the declared
-- scale and the distinct persons of the period, with the flows that carried them. scale_exceeded and
-- significant_change judge these rows; a scenario without persons has none.
CREATE OR REPLACE VIEW scenario_persons AS
WITH counted AS (
    SELECT s.scenario_id,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.nonsensitive) AS persons_nonsensitive,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.sensitive) AS persons_sensitive,
           count(DISTINCT s.flow_id) FILTER (WHERE rp.nonsensitive) AS flows_nonsensitive,
           count(DISTINCT s.flow_id) FILTER (WHERE rp.sensitive) AS flows_sensitive,
           min(s.ts_start) AS first_seen,
           max(s.ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(s.flow_id) FILTER (WHERE rp.nonsensitive))), 1, 5)
               AS examples_nonsensitive,
           array_slice(list_sort(list_distinct(list(s.flow_id) FILTER (WHERE rp.sensitive))), 1, 5)
               AS examples_sensitive
    FROM period_scenario_flows s
    JOIN record_persons rp ON rp.flow_id = s.flow_id
    GROUP BY s.scenario_id
)
SELECT sc.scenario_id, 'persons_nonsensitive' AS subject, sc.persons_nonsensitive AS declared,
       c.persons_nonsensitive AS observed_persons, c.flows_nonsensitive AS flows,
       c.first_seen, c.last_seen, c.examples_nonsensitive AS example_flow_ids
FROM scenarios sc JOIN counted c ON c.scenario_id = sc.scenario_id
UNION ALL
SELECT sc.scenario_id, 'persons_sensitive', sc.persons_sensitive,
       c.persons_sensitive, c.flows_sensitive,
       c.first_seen, c.last_seen, c.examples_sensitive
FROM scenarios sc JOIN counted c ON c.scenario_id = sc.scenario_id;
