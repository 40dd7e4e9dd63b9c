{#- Devices active in the last var('active_minutes') minutes, counted back from the newest
    event in the data (not the wall clock), so that a build is reproducible and a simulated
    clock works. One row. -#}

{%- set active = var('active_minutes') * 60 -%}

with

usage as (

    select * from {{ ref('fct_usage_windowed') }}

),

newest_window as (

    select coalesce(max(window_epoch), 0) as window_epoch from usage

),

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        event_at >= {{ epoch_to_instant('(select window_epoch from newest_window) - ' ~ active) }}
        and ingest_seq < {{ ingest_high() }}

),

users as (

    select * from {{ ref('dim_users') }}

),

as_of as (

    select max(event_epoch) as as_of_epoch from events

),

recent as (

    select events.*
    from events
    cross join as_of
    where events.event_epoch > as_of.as_of_epoch - {{ active }}

),

final as (

    select
        {{ epoch_to_timestamp('as_of.as_of_epoch') }} as as_of,
        {{ var('active_minutes') }} as active_minutes,
        count(distinct recent.device_id) as devices_active,
        count(distinct case when users.user_id is null then recent.device_id end) as unknown_devices_active,
        {{ sum_bigint('recent.bytes') }} as bytes_total

    from as_of
    left join recent
        on 1 = 1
    left join users
        on recent.device_id = users.user_id
    group by 1, 2

)

select * from final
