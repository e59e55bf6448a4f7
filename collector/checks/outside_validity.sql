-- check: outside_validity
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（三）项：备案有效期内按备案内容出境 (Measures Art. 10(3): exports within the filing's validity)
-- action: 限期整改：有效期外暂停出境；生效前出境的说明情况，到期的及时申请延续或重新备案 (suspend exports outside the validity; explain exports before it, renew or re-file an expired one)
-- params: $period_from, $period_to
-- Scenario flows in the period carrying PI or important-data candidates that started before valid_from
-- (00:00 CST) or on/after the day after valid_until (00:00 CST): the store computes both instants
-- (filing.valid_from_at, filing.valid_until_end). One row per (scenario, side).
WITH scoped AS (
    SELECT s.*,
           CASE WHEN s.ts_start < fi.valid_from_at THEN 'before_valid_from'
                WHEN s.ts_start >= fi.valid_until_end THEN 'after_valid_until' END AS subject
    FROM scenario_flows s
    CROSS JOIN filing fi
    WHERE s.ts_start >= $period_from AND s.ts_start < $period_to
),
hits AS (
    SELECT o.scenario_id, o.subject, o.ts_start, o.ts_end, d.*
    FROM scoped o
    JOIN detections d ON d.flow_id = o.flow_id
    LEFT JOIN field_types ft ON ft.id = d.field_type
    WHERE o.subject IS NOT NULL
      AND (coalesce(ft.pi, true) OR d.important_subcategory IS NOT NULL)
),
per_side AS (
    SELECT scenario_id, subject,
           count(DISTINCT flow_id) AS flows,
           sum(occurrences) AS occurrences,
           list_sort(list_distinct(list(field_type))) AS field_types,
           coalesce(list_sort(list_distinct(list(important_subcategory)
                    FILTER (WHERE important_subcategory IS NOT NULL))), []) AS important_subcategories,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           list_sort(list_distinct(list(flow_id)))[1:5] AS example_flow_ids,
           list_sort(list_distinct(flatten(list(key_paths))))[1:5] AS key_paths,
           coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type <> 'important_data')))), [])[1:5] AS masked_samples
    FROM hits
    GROUP BY scenario_id, subject
)
SELECT p.scenario_id,
       p.subject,
       format('{} .. {} (CST)', fi.valid_from, fi.valid_until) AS expected,
       format('{} flow(s) carrying {} from {} to {}', p.flows, array_to_string(p.field_types, ', '),
              strftime(timezone('Asia/Shanghai', p.first_seen), '%Y-%m-%d %H:%M CST'),
              strftime(timezone('Asia/Shanghai', p.last_seen), '%Y-%m-%d %H:%M CST')) AS observed,
       fi.valid_from, fi.valid_until, p.flows, p.occurrences, p.field_types, p.important_subcategories,
       p.first_seen, p.last_seen, p.example_flow_ids, p.key_paths, p.masked_samples
FROM per_side p
CROSS JOIN filing fi
ORDER BY p.scenario_id, p.subject
