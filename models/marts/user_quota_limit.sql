{#- The original exercise's quota table: one row per user-hour over quota. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': '"timestamp"', 'kind': 'timestamp', 'grain': 3600}},
        unique_key=['email', 'timestamp'],
        partition_by=ingest_partition_by('timestamp'),
    )
}}

{%- set increment = ingest_increment(grain=3600) %}

with

breaches as (

    select * from {{ ref('fct_quota_breaches') }}
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

final as (

    select
        cast(email as {{ dbt.type_string() }}) as email,
        cast(usage_bytes as {{ dbt.type_bigint() }}) as usage,
        cast(quota_bytes as {{ dbt.type_bigint() }}) as quota,
        hour_start as {{ adapter.quote('timestamp') }}

    from breaches

)

select * from final
