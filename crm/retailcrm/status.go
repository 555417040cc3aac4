package retailcrm

import (
	"strconv"
	"time"

	"callgate/crm/outbox"
)

// StatusItem tells RetailCRM that a manager set their status in callgate's
// console (POST /api/v5/users/{id}/status: free, busy, dinner or break),
// so RetailCRM shows what callgate routes by. Items of one user are
// delivered in order.
func (c *Connector) StatusItem(userID int, status string, at time.Time) outbox.Item {
	id := strconv.Itoa(userID)
	return item("status-"+id, "status-"+id+"-"+strconv.FormatInt(at.UnixNano(), 10), "status",
		"/api/v5/users/"+id+"/status", map[string]string{"status": status})
}
