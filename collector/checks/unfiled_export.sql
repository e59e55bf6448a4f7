-- check: unfiled_export
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条：数据处理者使用负面清单出境数据，应提交申请并完成备案 (Measures Art. 10: exports under the negative-list regime need a completed filing)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 立即暂停出境：在备案生效（或恢复）前停止向境外提供个人信息和重要数据，完成备案后再恢复 (stop the exports until a filing is active)
-- PI or important-data candidates on any cross-border flow in the period while the filing is not active
-- (draft, submitted, suspended, revoked, expired). One row, subject = the filing's status; critical when
-- the zone suspended or revoked it. An active filing returns nothing here (its dates are outside_validity's).

-- Every PI export of the period, one finding: the filing's status (nothing when it is active).
CREATE OR REPLACE TEMP VIEW hits AS
SELECT NULL::VARCHAR AS scenario_id, fi.status AS subject, e.*
FROM pi_exports e
CROSS JOIN filing fi
WHERE fi.status <> 'active';

SELECT e.scenario_id,
       e.subject,
       CASE WHEN fi.status IN ('suspended', 'revoked') THEN 'critical' ELSE 'high' END AS severity,
       'active' AS expected,
       concat('filing ', fi.filing_id, ' is ', fi.status, ': ', e.flows, ' flow(s) carried ',
              array_to_string(e.field_types, ', '), ' abroad') AS observed,
       fi.filing_id, e.flows, e.occurrences, p.persons_nonsensitive, p.persons_sensitive, e.field_types,
       e.important_subcategories, e.destinations, e.first_seen, e.last_seen, e.example_flow_ids,
       e.key_paths, e.masked_samples
FROM hit_evidence e
CROSS JOIN period_persons p
CROSS JOIN filing fi
