with

closed_hours as (

    select * from {{ ref('stg_lake__closed_hours') }}

)

select * from closed_hours
