-- The evidence roll-up every check about flagged detections shows (DESIGN §6): written here once.
-- Not a check: runner.discover() skips it. A check that flags detections declares them first,
--
--     CREATE OR REPLACE TEMP VIEW hits AS SELECT <scenario_id>, <subject>, <detection columns> FROM …;
--
-- one row per flagged detection with the finding it belongs to (scenario_id, NULL when none, and subject)
-- and the detections columns flow_id, field_type, important_subcategory, occurrences, sensitive,
-- confidence, key_paths, masked_samples (a row of typed_detections, scenario_detections or pi_exports has
-- them all). runner.py then loads this file in the check's own cursor, so `hits` and these views are that
-- check's alone, and the check's final SELECT reads `hit_evidence`: one row per (scenario_id, subject).
--
-- Written in the SQL that sqlglot translates faithfully to Spark (tests/collector/test_checks_sql.py);
-- statements end with a semicolon at the end of a line.

-- Over the flagged detections: what they carried.
CREATE OR REPLACE TEMP VIEW hit_detections AS
SELECT scenario_id, subject,
       count(DISTINCT flow_id) AS flows,
       sum(occurrences) AS occurrences,
       list_sort(list_distinct(list(field_type))) AS field_types,
       coalesce(list_sort(list_distinct(list(important_subcategory)
                FILTER (WHERE important_subcategory IS NOT NULL))), []) AS important_subcategories,
       bool_or(sensitive) AS sensitive,
       max(confidence) AS confidence,
       array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
       -- masked samples of PI only: the agent's important_data rows carry matched term names (config
       -- words, never values) in that column, shown apart as matched_terms
       array_slice(coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
           WHERE field_type <> 'important_data')))), []), 1, 5) AS masked_samples,
       array_slice(coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
           WHERE field_type = 'important_data')))), []), 1, 8) AS matched_terms
FROM hits
GROUP BY scenario_id, subject;

-- Over the flows that carried them (each flow once per finding): where and when it went.
CREATE OR REPLACE TEMP VIEW hit_flows AS
SELECT h.scenario_id, h.subject,
       sum(f.bytes_out) AS bytes_out,
       min(f.ts_start) AS first_seen,
       max(f.ts_end) AS last_seen,
       array_slice(list_sort(list_distinct(list(f.destination))), 1, 5) AS destinations,
       array_slice(list_sort(list_distinct(list(f.dst_ip))), 1, 5) AS dst_ips,
       list_sort(list_distinct(list(coalesce(f.dst_country, 'unknown')))) AS countries,
       -- the first five in time order (ties by id)
       array_slice(list_transform(list_sort(list(struct_pack(ts := f.ts_start, id := f.flow_id))),
                                  lambda x: x.id), 1, 5) AS example_flow_ids
FROM (SELECT DISTINCT scenario_id, subject, flow_id FROM hits) h
JOIN period_flows f ON f.flow_id = h.flow_id
GROUP BY h.scenario_id, h.subject;

-- Both, one row per finding: the view a check's final SELECT reads.
CREATE OR REPLACE TEMP VIEW hit_evidence AS
SELECT d.*, f.bytes_out, f.first_seen, f.last_seen, f.destinations, f.dst_ips, f.countries,
       f.example_flow_ids
FROM hit_detections d
JOIN hit_flows f ON f.scenario_id IS NOT DISTINCT FROM d.scenario_id AND f.subject = d.subject;
