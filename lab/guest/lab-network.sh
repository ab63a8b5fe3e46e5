#!/bin/sh
# The host's network bring-up, standing in for NetworkManager: the lab's initial
# addressing, then main-table defaults from ifcfg-eth1/ifcfg-eth2 when those profiles
# carry a gateway and no VRF= key (NetworkManager's fallback that broke the blog's setup).
ip -force -batch /usr/lib/lab/network.batch || echo "lab-network: initial addressing failed" >&2
for n in 1 2; do
    f=/etc/sysconfig/network-scripts/ifcfg-eth$n
    [ -f "$f" ] || continue
    (
        GATEWAY="" IPV6_DEFAULTGW="" DEFROUTE=yes IPV6_DEFROUTE=yes VRF="" ONBOOT=yes
        . "$f"
        [ -n "$VRF" ] && exit 0
        [ "$ONBOOT" = no ] && exit 0
        if [ -n "$GATEWAY" ] && [ "$DEFROUTE" != no ]; then
            ip route add default via "$GATEWAY" dev "eth$n" proto static metric $((100 + n))
        fi
        if [ -n "$IPV6_DEFAULTGW" ] && [ "$IPV6_DEFROUTE" != no ]; then
            ip -6 route add default via "${IPV6_DEFAULTGW%%\%*}" dev "eth$n" proto static metric $((100 + n))
        fi
    )
done
exit 0
