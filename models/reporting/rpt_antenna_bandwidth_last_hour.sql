{#- The Network, live dashboard's bandwidth per antenna: mart
    `fct_antenna_bandwidth_windowed` over the last var('recent_minutes') of data, with the
    antenna's label. -#}

with

bandwidth as (

    select * from {{ ref('fct_antenna_bandwidth_windowed') }}
    where {{ within_last_minutes_of_data('window_start', ref('fct_antenna_bandwidth_windowed'), var('recent_minutes')) }}

),

final as (

    select
        window_start,
        antenna_id,
        {{ antenna_label('antenna_id') }} as antenna,
        bytes_total,
        devices_seen,
        bytes_per_second

    from bandwidth

)

select * from final
