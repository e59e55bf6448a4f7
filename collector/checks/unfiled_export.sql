-- check: unfiled_export
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条：数据处理者使用负面清单出境数据，应提交申请并完成备案 (Measures Art. 10: exports under the negative-list regime need a completed filing)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 立即暂停出境：在备案生效（或恢复）前停止向境外提供个人信息和重要数据，完成备案后再恢复 (stop the exports until a filing is active)
-- PI or important-data candidates on any cross-border flow in the period while the filing is not active
-- (draft, submitted, suspended, revoked, expired). One row, subject = the filing's status; critical when
-- the zone suspended or revoked it. An active filing returns nothing here (its dates are outside_validity's).
WITH summary AS (
    SELECT count(DISTINCT flow_id) AS flows,
           sum(occurrences) AS occurrences,
           list_sort(list_distinct(list(field_type))) AS field_types,
           coalesce(list_sort(list_distinct(list(important_subcategory)
                    FILTER (WHERE important_subcategory IS NOT NULL))), []) AS important_subcategories,
           array_slice(list_sort(list_distinct(list(destination))), 1, 5) AS destinations,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(flow_id))), 1, 5) AS example_flow_ids,
           array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
           array_slice(coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type <> 'important_data')))), []), 1, 5) AS masked_samples
    FROM pi_exports
)
SELECT NULL::VARCHAR AS scenario_id,
       fi.status AS subject,
       CASE WHEN fi.status IN ('suspended', 'revoked') THEN 'critical' ELSE 'high' END AS severity,
       'active' AS expected,
       concat('filing ', fi.filing_id, ' is ', fi.status, ': ', s.flows, ' flow(s) carried ',
              array_to_string(s.field_types, ', '), ' abroad') AS observed,
       fi.filing_id, s.flows, s.occurrences, p.persons_nonsensitive, p.persons_sensitive, s.field_types,
       s.important_subcategories, s.destinations, s.first_seen, s.last_seen, s.example_flow_ids,
       s.key_paths, s.masked_samples
FROM summary s
CROSS JOIN period_persons p
CROSS JOIN filing fi
WHERE fi.status <> 'active' AND s.flows > 0
