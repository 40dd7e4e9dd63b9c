{#- One row per user-hour whose usage is strictly greater than the user's hourly quota
    (usage equal to the quota is no breach). -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': 'hour_epoch', 'grain': 3600}},
        unique_key=['hour_epoch', 'user_id'],
        partition_by=ingest_partition_by('hour_epoch'),
        indexes=[{'columns': ['hour_epoch']}],
    )
}}

{%- set increment = ingest_increment(grain=3600) %}

with

user_usage as (

    select * from {{ ref('fct_user_usage_hourly') }}
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

breaches as (

    select * from user_usage
    where is_over_quota

),

final as (

    select
        hour_start,
        hour_epoch,
        device_id as user_id,
        user_name,
        email,
        usage_bytes,
        quota_bytes,
        usage_bytes - quota_bytes as overage_bytes,
        cast(usage_bytes as {{ type_double() }}) / nullif(quota_bytes, 0) as usage_ratio

    from breaches

)

select * from final
