-- check: outside_validity
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（三）项：备案有效期内按备案内容出境 (Measures Art. 10(3): exports within the filing's validity)
-- action: 限期整改：有效期外暂停出境；生效前出境的说明情况，到期的及时申请延续或重新备案 (suspend exports outside the validity; explain exports before it, renew or re-file an expired one)
-- Scenario flows in the period carrying PI or important-data candidates that started before valid_from
-- (00:00 CST) or on/after the day after valid_until (00:00 CST): the store computes both instants
-- (filing.valid_from_at, filing.valid_until_end). One row per (scenario, side).
WITH hits AS (
    SELECT d.*,
           CASE WHEN d.ts_start < fi.valid_from_at THEN 'before_valid_from'
                WHEN d.ts_start >= fi.valid_until_end THEN 'after_valid_until' END AS subject
    FROM scenario_detections d
    CROSS JOIN filing fi
    WHERE d.is_exported_data
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
           array_slice(list_sort(list_distinct(list(flow_id))), 1, 5) AS example_flow_ids,
           array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
           array_slice(coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type <> 'important_data')))), []), 1, 5) AS masked_samples
    FROM hits
    WHERE subject IS NOT NULL
    GROUP BY scenario_id, subject
)
SELECT p.scenario_id,
       p.subject,
       concat(fi.valid_from, ' .. ', fi.valid_until, ' (CST)') AS expected,
       concat(p.flows, ' flow(s) carrying ', array_to_string(p.field_types, ', '), ' from ',
              strftime(p.first_seen AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:%M CST'), ' to ',
              strftime(p.last_seen AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:%M CST')) AS observed,
       fi.valid_from, fi.valid_until, p.flows, p.occurrences, p.field_types, p.important_subcategories,
       p.first_seen, p.last_seen, p.example_flow_ids, p.key_paths, p.masked_samples
FROM per_side p
CROSS JOIN filing fi
ORDER BY p.scenario_id, p.subject
