{#- The Hourly usage and quotas dashboard's bytes: mart `bytes_hourly` with an hour label
    for the bar charts' axis and a label for each row (the antenna's short id, the user's
    email or the app). Every hour, not only the last one. -#}

with

hourly_bytes as (

    select * from {{ ref('bytes_hourly') }}

),

final as (

    select
        {{ adapter.quote('timestamp') }} as hour_start,
        {{ minute_label(adapter.quote('timestamp')) }} as hour_label,
        type,
        id,
        case
            when type = 'antenna_bytes_total' then {{ antenna_label('id') }}
            else id
        end as label,
        value as bytes

    from hourly_bytes

)

select * from final
